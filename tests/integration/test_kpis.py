"""The shared KPIs on a fixed history, through the live pipeline into PostgreSQL, checked against
values computed by hand: a won deal, a lost deal, a lead that went backwards (rejected, then
reopened), a sales-created lead, an anonymous visitor, two currencies, imported spend. Then the
report's JSON against the views, the funnel chart, and the read-only analyst role."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import psycopg
import pytest
from click.testing import CliRunner

from streams.db.migrate import connect_kwargs
from tests.integration.conftest import query, wait_for

TRAITS = {"email": "{}@acme.io", "company": "Acme", "industry": "saas", "employees": 200,
          "budget": 50000, "country": "US", "job_title": "CTO"}
SPRING = {"source": "google", "medium": "cpc", "name": "spring"}
FALL = {"source": "linkedin", "medium": "social", "name": "fall"}


def ev(lead, when, type_="track", name=None, campaign=None, **kw):
    m = {"messageId": uuid.uuid4().hex, "type": type_, "userId": lead, "timestamp": when, **kw}
    if name:
        m["event"] = name
    if campaign:
        m["context"] = {"campaign": campaign}
    return m


def qualify(lead, day, campaign=None):
    """identify 09:00, download 09:01 (-> mql), demo 09:02, trial 09:03 (-> sql)."""
    t = f"2026-{day}T09:0{{}}:00Z"
    traits = {**TRAITS, "email": TRAITS["email"].format(lead)}
    return [ev(lead, t.format(0), "identify", traits=traits, campaign=campaign),
            ev(lead, t.format(1), name="Content Downloaded", campaign=campaign),
            ev(lead, t.format(2), name="Demo Requested", campaign=campaign),
            ev(lead, t.format(3), name="Trial Started", campaign=campaign)]


def cmd(lead, action, when, **kw):
    return {"command_id": uuid.uuid4().hex, "lead_id": lead, "action": action,
            "occurred_at": when, "actor": "rep@acme.io", **kw}


def send(producer, settings, topic, messages):
    for m in messages:
        producer.send(settings.topic(topic), key=(m.get("userId") or m.get("anonymousId") or m["lead_id"]).encode(),
                      value=orjson.dumps(m))
    producer.flush()


def stages(settings):
    return dict(query(settings, "SELECT lead_id, stage FROM leads"))


@pytest.fixture(scope="module")
def history(pipeline, producer, tmp_path_factory):
    settings, worker = pipeline
    send(producer, settings, "events",
         qualify("k-a", "10-05", SPRING) + qualify("k-b", "10-07", SPRING)
         + qualify("k-c", "11-02", FALL)
         + [ev("k-d", "2026-11-10T09:00:00Z", "identify",
               traits={"email": "student@uni.edu", "job_title": "student"}),
            ev("k-d", "2026-11-10T09:01:00Z", name="Content Downloaded")]
         + [{"messageId": uuid.uuid4().hex, "type": "page", "anonymousId": "a-e",
             "timestamp": f"2026-11-11T10:0{i}:00Z", "properties": {"path": "/blog"}}
            for i in range(3)])

    def at(expected):
        wait_for(lambda: all(stages(settings).get(k) == v for k, v in expected.items()), 90,
                 f"stages {expected}", worker)

    at({"k-a": "sql", "k-b": "sql", "k-c": "sql", "k-d": "mql", "a-e": "iql"})
    send(producer, settings, "sales-feedback", [
        cmd("k-a", "won", "2026-10-15T09:03:00Z", amount=1000, currency="USD"),
        cmd("k-b", "lost", "2026-10-09T09:03:00Z", reason="no budget"),
        cmd("k-c", "reject", "2026-11-03T09:03:00Z", reason="not now"),
        cmd("k-f", "create", "2026-11-12T09:00:00Z", traits={"email": "buyer@big.co"})])
    at({"k-a": "customer", "k-b": "recycled", "k-c": "recycled", "k-f": "sql"})
    send(producer, settings, "sales-feedback", [cmd("k-c", "reopen", "2026-11-04T09:03:00Z")])
    at({"k-c": "sql"})
    send(producer, settings, "sales-feedback", [
        cmd("k-c", "won", "2026-11-06T09:03:00Z", amount=500, currency="EUR"),
        cmd("k-f", "won", "2026-11-14T09:00:00Z", amount=300, currency="EUR"),
        cmd("k-a", "won", "2026-11-20T10:00:00Z", amount=100, currency="USD")])   # a repeat order
    at({"k-c": "customer", "k-f": "customer"})
    csv = tmp_path_factory.mktemp("costs") / "spend.csv"
    csv.write_text("campaign,period,amount,currency\nspring,2026-10,600,USD\n"
                   "fall,2026-11,200,EUR\nfall,2026-W45,50,EUR\n")
    r = cli(settings, "costs", "import", str(csv))
    assert r.exit_code == 0 and "imported 3 spend rows" in r.output, r.output
    return settings


def cli(settings, *args):
    from streams.cli import main

    env = {"FUNNEL_DATABASE_URL": settings.dsn(), "FUNNEL_DB_SCHEMA": settings.db_schema,
           "FUNNEL_TOPIC_PREFIX": settings.topic_prefix}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def view(settings, name, **where):
    cond = " AND ".join(f"{k} = %s" for k in where) or "true"
    with psycopg.connect(settings.dsn(), **connect_kwargs(settings.db_schema)) as conn:
        conn.row_factory = psycopg.rows.dict_row
        return conn.execute(f"SELECT * FROM {name} WHERE {cond} ORDER BY 1, 2, 3, 4",
                            list(where.values())).fetchall()


def one(rows, **match):
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


def test_the_history_went_where_it_was_meant_to(history):
    rows = query(history, "SELECT lead_id, from_stage, to_stage, trigger FROM lead_transitions "
                 "WHERE lead_id = 'k-c' ORDER BY version")
    assert [r[2] for r in rows] == ["mql", "sql", "recycled", "sql", "customer"]


def test_the_funnel_per_month_and_per_campaign_is_the_hand_computed_one(history):
    rows = view(history, "kpi_funnel", grain="month", dimension="all")
    october = one(rows, period=__import__("datetime").date(2026, 10, 1))
    november = one(rows, period=__import__("datetime").date(2026, 11, 1))
    assert (october["leads"], october["mqls"], october["sqls"], october["customers"]) == (2, 2, 2, 1)
    assert october["visitors"] == 0 and october["customer_rate"] == Decimal("0.5")
    # k-c, k-d, k-f are leads; a-e is an anonymous visitor
    assert (november["visitors"], november["leads"], november["mqls"], november["sqls"],
            november["customers"]) == (1, 3, 3, 2, 2)
    assert november["sql_rate"] == Decimal("0.6667") and november["customer_rate"] == 1
    by_campaign = view(history, "kpi_funnel", grain="all", dimension="campaign")
    assert {r["value"]: (r["leads"], r["sqls"], r["customers"]) for r in by_campaign} == {
        "spring": (2, 2, 1), "fall": (1, 1, 1), "(none)": (2, 1, 1)}
    by_origin = view(history, "kpi_funnel", grain="all", dimension="origin")
    assert {r["value"]: r["leads"] for r in by_origin} == {"marketing": 4, "sales": 1}


def test_moves_into_each_stage_per_period(history):
    from datetime import date

    rows = view(history, "kpi_stage_entries", grain="month", dimension="all")
    sql = one(rows, period=date(2026, 11, 1), stage="sql")
    assert (sql["entries"], sql["leads"]) == (3, 2)   # k-c twice (reopened), k-f once
    recycled = one(rows, period=date(2026, 10, 1), stage="recycled")
    assert (recycled["entries"], recycled["leads"]) == (1, 1)   # k-b lost


def test_close_rate_and_sales_cycle_are_the_hand_computed_ones(history):
    total = one(view(history, "kpi_sales", grain="all", dimension="all"))
    # won: k-a (10 days from its SQL), k-c (2 days from the reopened SQL), k-f (2 days); lost: k-b
    assert (total["won"], total["lost"], total["close_rate"]) == (3, 1, Decimal("0.75"))
    assert total["cycles"] == 3 and total["cycle_median_days"] == Decimal("2.00")
    assert total["cycle_p90_days"] == Decimal("8.40")   # 2 + 0.8 * (10 - 2)
    months = {r["period"].month: r for r in view(history, "kpi_sales", grain="month",
                                                 dimension="all")}
    assert (months[10]["won"], months[10]["lost"], months[10]["close_rate"]) == (1, 1,
                                                                                 Decimal("0.5"))
    assert months[10]["cycle_median_days"] == Decimal("10.00")
    assert (months[11]["won"], months[11]["lost"]) == (2, 0)


def test_revenue_keeps_its_currencies_apart_and_counts_in_the_month_of_the_order(history):
    from datetime import date

    wait_for(lambda: query(history, "SELECT orders FROM leads WHERE lead_id = 'k-a'") == [(2,)],
             30, "the repeat order")
    rows = view(history, "kpi_revenue", grain="all", dimension="all")
    assert {r["currency"]: (r["customers"], r["orders"], r["revenue"]) for r in rows} == {
        "USD": (1, 2, Decimal("1100")), "EUR": (2, 2, Decimal("800"))}
    months = view(history, "kpi_revenue", grain="month", dimension="all")
    assert {(r["period"], r["currency"]): (r["orders"], r["revenue"]) for r in months} == {
        (date(2026, 10, 1), "USD"): (1, Decimal("1000")),
        (date(2026, 11, 1), "USD"): (1, Decimal("100")),    # k-a's repeat order
        (date(2026, 11, 1), "EUR"): (2, Decimal("800"))}


def test_time_in_sql_is_a_distribution(history):
    sql = one(view(history, "kpi_time_in_stage", grain="all", dimension="all"), stage="sql")
    # stays in sql: 240 h (k-a), 48 h (k-b), 24 h (k-c), 48 h (k-c again), 48 h (k-f)
    assert sql["stays"] == 5 and sql["median_hours"] == Decimal("48.00")
    assert sql["p90_hours"] == Decimal("163.20") and sql["avg_hours"] == Decimal("81.60")


def test_cost_per_lead_and_per_customer_come_from_the_imported_spend(history):
    from datetime import date

    months = view(history, "kpi_costs", grain="month")
    spring = one(months, value="spring")
    assert (spring["period"], spring["currency"], spring["spend"]) == (date(2026, 10, 1), "USD",
                                                                       Decimal("600.00"))
    assert (spring["leads"], spring["cost_per_lead"], spring["cost_per_customer"]) == (
        2, Decimal("300.00"), Decimal("600.00"))
    fall = one(months, value="fall")   # the month's 200 and the week's 50
    assert (fall["spend"], fall["cost_per_lead"], fall["cost_per_customer"]) == (
        Decimal("250.00"), Decimal("250.00"), Decimal("250.00"))
    weeks = view(history, "kpi_costs", grain="week")   # only the week's spend is weekly
    assert [(r["period"], r["value"], r["spend"]) for r in weeks] == [
        (date(2026, 11, 2), "fall", Decimal("50.00"))]


def test_the_report_json_equals_the_views_and_the_chart_is_a_picture(history, tmp_path):
    chart = tmp_path / "funnel.png"
    r = cli(history, "report", "--by", "campaign", "--grain", "month", "--format", "json",
            "--chart", str(chart))
    assert r.exit_code == 0, r.output
    report = orjson.loads(r.stdout)
    for section, name in (("funnel", "kpi_funnel"), ("sales", "kpi_sales"),
                          ("revenue", "kpi_revenue"), ("time_in_stage", "kpi_time_in_stage"),
                          ("costs", "kpi_costs")):
        expected = orjson.loads(orjson.dumps(view(history, name, grain="month",
                                                  dimension="campaign"), default=float))
        key = (lambda r: (r["period"], r["value"], r.get("stage", ""), r.get("currency", "")))
        assert sorted(report[section], key=key) == sorted(expected, key=key), section
    spring = one(report["summary"], value="spring", period="2026-10-01")
    assert spring["leads"] == 2 and spring["cost_per_lead_USD"] == 300.0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 5000
    table = cli(history, "report", "--by", "origin").output
    assert "marketing" in table and "sales" in table and "Time in stage" in table
    csv = cli(history, "report", "--grain", "all", "--format", "csv").output.splitlines()
    assert csv[0].startswith("period,value,leads") and csv[1].startswith("1970-01-01,(all),5,")


def test_report_arguments_are_checked(history):
    r = cli(history, "report", "--since", "2026-11-01", "--until", "2026-10-01")
    assert r.exit_code == 2 and "must be after --since" in r.output
    r = cli(history, "report", "--by", "color")
    assert r.exit_code == 2 and "color" in r.output


def test_the_analyst_role_reads_but_cannot_write(history):
    with psycopg.connect(history.dsn(), **connect_kwargs(history.db_schema)) as conn:
        conn.execute("SET ROLE funnel_analyst")
        n = conn.execute("SELECT sum(leads) FROM kpi_funnel WHERE grain = 'all' "
                         "AND dimension = 'campaign'").fetchone()[0]
        assert n == 5
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE leads SET stage = 'customer'")
        conn.rollback()
        conn.execute("SET ROLE funnel_analyst")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM campaign_costs")


def test_ad_spend_reported_events_become_spend_and_bad_ones_are_dead_lettered(history,
                                                                              producer):
    from datetime import date

    from streams.clients import read_all

    settings = history
    report = {"messageId": uuid.uuid4().hex, "type": "track", "event": "Ad Spend Reported",
              "anonymousId": "google-ads", "timestamp": "2026-11-30T23:00:00Z",
              "properties": {"campaign": "fall", "period": "2026-11-03", "amount": 40,
                             "currency": "EUR"}}
    bad = {**report, "messageId": uuid.uuid4().hex,
           "properties": {"campaign": "fall", "period": "soon", "amount": 1, "currency": "EUR"}}
    for m in (report, bad):
        producer.send(settings.topic("events"), key=b"google-ads", value=orjson.dumps(m))
    producer.flush()
    day = wait_for(lambda: [r for r in view(settings, "kpi_costs", grain="day")
                            if r["value"] == "fall"], 60, "the reported spend")
    assert [(r["period"], r["spend"], r["currency"]) for r in day] == [
        (date(2026, 11, 3), Decimal("40.00"), "EUR")]
    fall = one(view(settings, "kpi_costs", grain="month"), value="fall")
    assert fall["spend"] == Decimal("290.00")   # 200 + 50 imported, 40 reported
    assert query(settings, "SELECT count(*) FROM leads WHERE lead_id = 'google-ads'") == [(0,)]
    dlq = wait_for(lambda: [r for r in read_all(settings, settings.topic("events.dlq"), timeout=5)
                            if r.key == b"google-ads"], 30, "the bad report on the DLQ")
    assert dict(dlq[0].headers)["error"] == b"invalid_spend"
    assert b"soon" in dict(dlq[0].headers)["error_detail"]
