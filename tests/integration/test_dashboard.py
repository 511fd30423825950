"""The live dashboard in a real headless browser (Debian's chromium, driven with Selenium): the
numbers on the page equal the SQL views, the page refreshes by itself when the funnel moves,
and a lead's page shows its scores, explanation and history. Also ``/healthz``."""

from __future__ import annotations

import shutil
import time
import uuid
from decimal import Decimal

import orjson
import psycopg
import pytest
import requests

from streams.db.migrate import connect_kwargs
from tests.integration.conftest import query, wait_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TRAITS = {"company": "Umbrella", "industry": "saas", "employees": 900, "budget": 80000,
          "country": "US", "job_title": "CTO"}


def ev(lead, when, type_="track", name=None, **kw):
    m = {"messageId": uuid.uuid4().hex, "type": type_, "userId": lead, "timestamp": when, **kw}
    if name:
        m["event"] = name
    return m


def qualify(lead, day):
    t = f"2026-11-{day:02d}T09:0{{}}:00Z"
    return [ev(lead, t.format(0), "identify", traits={**TRAITS, "email": f"{lead}@umbrella.io"}),
            ev(lead, t.format(1), name="Content Downloaded"),
            ev(lead, t.format(2), name="Demo Requested"), ev(lead, t.format(3), name="Trial Started")]


def send(producer, settings, topic, messages):
    for m in messages:
        producer.send(settings.topic(topic), key=(m.get("userId") or m["lead_id"]).encode(),
                      value=orjson.dumps(m))
    producer.flush()


def views(settings):
    with psycopg.connect(settings.dsn(), **connect_kwargs(settings.db_schema)) as conn:
        conn.row_factory = psycopg.rows.dict_row
        where = "WHERE grain = 'all' AND dimension = 'all'"
        return {
            "funnel": conn.execute(f"SELECT * FROM kpi_funnel {where}").fetchone(),
            "sales": conn.execute(f"SELECT * FROM kpi_sales {where}").fetchone(),
            "revenue": {r["currency"]: r["revenue"] for r in conn.execute(
                f"SELECT * FROM kpi_revenue {where}").fetchall()},
            "stages": {r["stage"]: r["leads"] for r in conn.execute(
                "SELECT * FROM kpi_stages WHERE dimension = 'all'").fetchall()},
        }


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: install Debian's chromium and "
                    "chromium-driver ('make install' does it where apt-get is available)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--disable-dev-shm-usage",
                 "--window-size=1400,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def history(pipeline, producer):
    settings, worker = pipeline
    send(producer, settings, "events", qualify("d-won", 2) + qualify("d-lost", 3)
         + qualify("d-late", 4) + [ev("d-late", "2026-11-06T09:00:00Z", "page",
                                      properties={"path": "/docs"})]   # 2 days later: SLA breached
         + [ev("d-mql", "2026-11-05T09:00:00Z", "identify", traits={"email": "m@x.io"}),
            ev("d-mql", "2026-11-05T09:01:00Z", name="Content Downloaded")])
    wait_for(lambda: dict(query(settings, "SELECT lead_id, stage FROM leads")) == {
        "d-won": "sql", "d-lost": "sql", "d-late": "sql", "d-mql": "mql"}, 90, "the leads",
        worker)
    send(producer, settings, "sales-feedback", [
        {"command_id": "c1", "lead_id": "d-won", "action": "won", "amount": 700,
         "currency": "USD", "occurred_at": "2026-11-04T09:03:00Z", "actor": "ann@corp.io"},
        {"command_id": "c2", "lead_id": "d-lost", "action": "lost",
         "occurred_at": "2026-11-05T09:03:00Z", "actor": "bob@corp.io"}])
    wait_for(lambda: query(settings, "SELECT count(*) FROM leads WHERE stage IN "
                           "('customer', 'recycled')")[0][0] == 2, 60, "won and lost", worker)
    return settings


def kpi(driver, name) -> str:
    # found and read in one step: the page redraws itself every 3 s, and an element found
    # before a redraw is stale after it (StaleElementReferenceException, seen once in make test)
    value = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e && e.getAttribute('data-value')",
        f'[data-kpi="{name}"]')
    assert value is not None, f"no KPI {name} on the page"
    return value


def loaded(driver, at_least=1):
    wait_for(lambda: int(driver.find_element("tag name", "body").get_attribute("data-loaded")
                         or 0) >= at_least, 30, "the dashboard data")


def as_number(text):
    return Decimal(text) if text not in ("", None) else None


def test_the_numbers_on_the_dashboard_equal_the_sql_views(history, collector, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{collector}/")
    loaded(browser)
    v = views(history)
    for key in ("leads", "mqls", "sqls", "customers", "visitors"):
        assert int(kpi(browser, key)) == v["funnel"][key], key
    for key in ("mql_rate", "sql_rate", "customer_rate", "lead_to_customer_rate"):
        assert as_number(kpi(browser, key)) == v["funnel"][key], key
    for key in ("won", "lost"):
        assert int(kpi(browser, key)) == v["sales"][key], key
    for key in ("close_rate", "cycle_median_days", "cycle_p90_days"):
        assert as_number(kpi(browser, key)) == v["sales"][key], key
    assert as_number(kpi(browser, "revenue_USD")) == v["revenue"]["USD"] == 700
    stages = {e.get_attribute("data-stage"): int(e.get_attribute("data-value"))
              for e in browser.find_elements(By.CSS_SELECTOR, "[data-stage]")}
    assert stages == v["stages"]
    hot = [r.get_attribute("data-lead") for r in browser.find_elements(By.CSS_SELECTOR,
                                                                          "#hot tbody tr")]
    assert "d-late" in hot and "d-won" not in hot   # customers are done: not listed
    klass = dict(query(history, "SELECT lead_id, temperature = 'hot' AND quality = 'high' "
                       "FROM leads"))
    flags = [klass[lead] for lead in hot]
    assert flags[0] and flags == sorted(flags, reverse=True)   # hot high-fit leads first
    assert klass["d-mql"] is False and hot[-1] == "d-mql"
    handoffs = {r.get_attribute("data-lead") for r in browser.find_elements(
        By.CSS_SELECTOR, "#handoffs tbody tr")}
    assert handoffs == {"d-won", "d-lost", "d-late"}
    breaches = [r.get_attribute("data-lead") for r in browser.find_elements(
        By.CSS_SELECTOR, "#breaches tbody tr")]
    assert breaches == ["d-late"]


def test_the_dashboard_refreshes_by_itself_when_the_funnel_moves(history, collector, browser,
                                                                  producer):
    browser.get(f"{collector}/")
    loaded(browser)
    before = int(kpi(browser, "sqls"))
    send(producer, history, "events", qualify("d-new", 7))
    wait_for(lambda: int(kpi(browser, "sqls")) == before + 1, 60, "the page to show the new SQL")
    assert int(kpi(browser, "sqls")) == views(history)["funnel"]["sqls"]
    assert int(browser.find_element("tag name", "body").get_attribute("data-loaded")) > 1


def test_a_lead_page_shows_scores_explanation_and_history(history, collector, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{collector}/")
    loaded(browser)
    browser.find_element(By.CSS_SELECTOR, '#hot tr[data-lead="d-late"] a').click()
    wait_for(lambda: browser.find_element("tag name", "body").get_attribute("data-loaded"), 30,
             "the lead page")
    assert browser.current_url.endswith("/leads/d-late")
    score, stage = query(history, "SELECT interest_score, stage FROM leads "
                         "WHERE lead_id = 'd-late'")[0]
    field = browser.find_element(By.CSS_SELECTOR, '[data-field="interest_score"]')
    assert float(field.get_attribute("data-value")) == pytest.approx(score)
    assert browser.find_element(By.CSS_SELECTOR, '[data-field="stage"]').text == stage
    rules = [r.find_elements(By.TAG_NAME, "td")[0].text for r in browser.find_elements(
        By.CSS_SELECTOR, "#contributions tbody tr")]
    assert {"demo-request", "trial-started", "content-download"} <= set(rules)
    moves = [r.find_elements(By.TAG_NAME, "td")[3].text for r in browser.find_elements(
        By.CSS_SELECTOR, "#history tbody tr")]
    assert moves == ["mql", "sql"]


def test_healthz_reports_broker_database_and_lag(history, collector):
    deadline = time.monotonic() + 30
    while True:
        r = requests.get(f"{collector}/healthz", timeout=30)
        body = r.json()
        if (r.status_code == 200 and body["lag"] == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200 and body["broker"] == "ok" and body["database"] == "ok"
    assert body["lag"] == 0
    missing = requests.get(f"{collector}/api/leads/nobody", timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_the_kpis_of_a_month_come_from_the_month_rows(history, collector):
    from datetime import date

    r = requests.get(f"{collector}/api/overview", params={"period": "2026-11"}, timeout=10)
    body = r.json()
    month = views_month(history, date(2026, 11, 1))
    assert r.status_code == 200 and body["grain"] == "month" and "2026-11" in body["months"]
    assert body["funnel"]["leads"] == month["leads"] and body["funnel"]["sqls"] == month["sqls"]
    bad = requests.get(f"{collector}/api/overview", params={"period": "last week"}, timeout=10)
    assert bad.status_code == 400


def views_month(settings, period):
    with psycopg.connect(settings.dsn(), **connect_kwargs(settings.db_schema)) as conn:
        conn.row_factory = psycopg.rows.dict_row
        return conn.execute("SELECT * FROM kpi_funnel WHERE grain = 'month' AND period = %s "
                            "AND dimension = 'all'", (period,)).fetchone()
