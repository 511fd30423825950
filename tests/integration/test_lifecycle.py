"""The full lifecycle on the live pipeline, fed as the sales tool and trackers feed it
(kafka-python, JSON): the loop with Sales, idempotent and refused commands, identity merges."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson

from streams.clients import read_all
from tests.integration.conftest import query, wait_for

BASE = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
TRAITS = {"email": "cto@acme.io", "company": "Acme", "industry": "saas", "employees": 200,
          "budget": 50000, "country": "US", "job_title": "CTO"}


def t(hours: float) -> str:
    return (BASE + timedelta(hours=hours)).isoformat()


def ev(hours, type_="track", name=None, *, user=None, anon=None, **kw):
    m = {"messageId": uuid.uuid4().hex, "type": type_, "timestamp": t(hours), **kw}
    if user:
        m["userId"] = user
    if anon:
        m["anonymousId"] = anon
    if name:
        m["event"] = name
    return m


def cmd(lead, action, hours, cid=None, **kw):
    return {"command_id": cid or uuid.uuid4().hex, "lead_id": lead, "action": action,
            "occurred_at": t(hours), "actor": "rep@example.com", **kw}


def send(producer, settings, messages, topic="events"):
    for m in messages:
        key = m.get("userId") or m.get("anonymousId") or m.get("lead_id")
        producer.send(settings.topic(topic), key=key.encode(), value=orjson.dumps(m))
    producer.flush()


def row(settings, lead, cols="stage, version"):
    rows = query(settings, f"SELECT {cols} FROM leads WHERE lead_id = %s", lead)
    return rows[0] if rows else None


def wait_stage(settings, worker, lead, stage, timeout=60):
    return wait_for(lambda: (r := row(settings, lead)) and r[0] == stage and r, timeout,
                    f"{lead} at {stage}", worker)


def test_a_lead_goes_round_the_loop_with_its_history_in_lead_transitions(pipeline, producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    hot = [ev(0, "identify", user=lead, traits=TRAITS),
           ev(1, name="Content Downloaded", user=lead), ev(2, name="Demo Requested", user=lead),
           ev(3, name="Trial Started", user=lead)]
    send(producer, settings, hot)
    wait_stage(settings, worker, lead, "sql")
    send(producer, settings, [cmd(lead, "reject", 5, reason="no budget this year")],
         "sales-feedback")
    wait_stage(settings, worker, lead, "recycled")
    send(producer, settings, [ev(24 * 5, name="Webinar Attended", user=lead),
                              ev(24 * 5 + 1, name="Demo Requested", user=lead)])
    wait_stage(settings, worker, lead, "sql")
    won = cmd(lead, "won", 24 * 5 + 3, cid=f"won-{lead}", amount=4800.0, currency="EUR")
    send(producer, settings, [won, won], "sales-feedback")     # the sales tool retried
    wait_stage(settings, worker, lead, "customer")
    history = query(settings, "SELECT from_stage, to_stage, trigger, actor FROM lead_transitions "
                              "WHERE lead_id = %s ORDER BY version", lead)
    assert [(h[0], h[1]) for h in history] == [
        ("iql", "mql"), ("mql", "sql"), ("sql", "recycled"), ("recycled", "mql"),
        ("mql", "sql"), ("sql", "customer")]
    assert history[2][2:] == ("reject", "rep@example.com") and history[5][2] == "won"
    orders, revenue, by_currency, mql_at, recycled_at, customer_at = row(
        settings, lead, "orders, revenue, revenue_by_currency, mql_at, recycled_at, customer_at")
    assert orders == 1 and float(revenue) == 4800.0 and by_currency == {"EUR": 4800.0}
    assert mql_at == BASE + timedelta(hours=1) and recycled_at == BASE + timedelta(hours=5)
    assert customer_at == BASE + timedelta(hours=24 * 5 + 3)
    handoffs = [orjson.loads(r.value)["type"] for stage in ("mql", "sql", "customer")
                for r in read_all(settings, settings.topic(f"handoff.{stage}"), timeout=3)
                if r.key == lead.encode()]
    assert sorted(handoffs) == sorted(["funnel.lead.mql"] * 2 + ["funnel.lead.sql"] * 2
                                      + ["funnel.lead.customer"])


def test_a_refused_command_goes_to_the_dlq_with_its_reason_and_changes_nothing(pipeline, producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    send(producer, settings, [ev(0, "page", user=lead, properties={"path": "/"})])
    before = wait_for(lambda: row(settings, lead), 60, "the lead", worker)
    bad = cmd(lead, "lost", 1, cid=f"lost-{lead}")
    send(producer, settings, [bad], "sales-feedback")

    def dead():
        return [r for r in read_all(settings, settings.topic("events.dlq"), timeout=2)
                if r.key == lead.encode()]
    [letter] = wait_for(dead, 60, "the dead letter", worker)
    headers = dict(letter.headers)
    assert headers["error"] == b"command_refused"
    assert b"'lost' is not allowed from stage 'iql'" in headers["error_detail"]
    assert orjson.loads(letter.value) == bad
    assert row(settings, lead) == before


def test_a_sales_created_lead_enters_at_sql_with_origin_sales(pipeline, producer):
    settings, worker = pipeline
    lead = f"s-{uuid.uuid4().hex[:8]}"
    send(producer, settings, [cmd(lead, "create", 0, traits={"email": "buyer@shop.io"})],
         "sales-feedback")
    stage, origin, email = wait_for(lambda: row(settings, lead, "stage, origin, email"), 60,
                                    "the created lead", worker)
    assert (stage, origin, email) == ("sql", "sales", "buyer@shop.io")


def test_anonymous_browsing_then_identify_is_counted_on_the_known_lead(pipeline, producer):
    settings, worker = pipeline
    anon, user, twin = (f"a-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}",
                        f"u-{uuid.uuid4().hex[:8]}")
    browsing = [ev(0, "page", properties={"path": "/pricing"}),
                ev(0.1, "page", properties={"path": "/pricing"}),
                ev(0.2, "page", properties={"path": "/pricing"}),     # over the daily limit
                ev(1, "page", properties={"path": "/features"})]
    later = [ev(2, "identify", traits=TRAITS), ev(3, "page", properties={"path": "/plans"})]
    send(producer, settings, [{**m, "anonymousId": anon} for m in browsing])
    wait_for(lambda: row(settings, anon), 60, "the anonymous lead", worker)
    send(producer, settings, [{**m, "userId": user, "anonymousId": anon} for m in later])
    # the same messages under one id from the start: the differential reference
    send(producer, settings, [{**m, "userId": twin, "messageId": uuid.uuid4().hex}
                              for m in browsing + later])
    cols = "interest_score, temperature, fit_score, stage, events_count, first_seen_at, merged_from"

    def merged():
        r = row(settings, user, cols)
        return r if r and r[6] == [anon] else None
    known = wait_for(merged, 60, "the merge", worker)
    reference = wait_for(lambda: (r := row(settings, twin, cols)) and r[4] == 6 and r, 60,
                         "the one-id lead", worker)
    assert known[:6] == reference[:6]
    assert known[4] == 6 and known[5] == BASE
    assert wait_for(lambda: row(settings, anon, "merged_into")[0], 30, "merged_into",
                    worker) == user
    # a later event under the anonymous id only reaches the known lead
    send(producer, settings, [{**ev(4, name="Content Downloaded"), "anonymousId": anon}])
    assert wait_for(lambda: (r := row(settings, user, "events_count, stage")) and r[0] == 7
                    and r, 60, "the forwarded event", worker)[1] == "mql"
    # the merged id's row is a pointer, whatever the arrival order: its figures are the lead's
    assert row(settings, anon, "events_count, interest_score, first_seen_at, merged_into") == (
        0, 0.0, None, user)


def test_two_known_people_sharing_a_browser_are_not_merged(pipeline, producer):
    settings, worker = pipeline
    anon, alice, bob = (f"a-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}",
                        f"u-{uuid.uuid4().hex[:8]}")
    send(producer, settings, [ev(0, "page", anon=anon, properties={"path": "/"})])
    wait_for(lambda: row(settings, anon), 60, "the anonymous lead", worker)
    send(producer, settings, [ev(1, "identify", user=alice, anon=anon,
                                 traits={"email": "alice@acme.io"})])
    wait_for(lambda: row(settings, anon, "merged_into")[0] == alice, 60, "alice's merge", worker)
    send(producer, settings, [ev(2, "identify", user=bob, anon=anon,
                                 traits={"email": "bob@acme.io"})])

    def refused():
        return [r for r in read_all(settings, settings.topic("events.dlq"), timeout=2)
                if dict(r.headers).get("error") == b"link_refused" and r.key == anon.encode()]
    [letter] = wait_for(refused, 60, "the refused link", worker)
    assert f"already merged into {alice}".encode() in dict(letter.headers)["error_detail"]
    # (the dead letter can be read before the projection has caught up)
    assert wait_for(lambda: row(settings, bob, "merged_from, events_count"), 30, "bob's row",
                    worker) == ([], 1)
    assert wait_for(lambda: row(settings, alice, "merged_from, events_count") == ([anon], 2), 30,
                    "alice's merged row", worker)
