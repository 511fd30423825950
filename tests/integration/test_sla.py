"""The two_step policy and the service levels on the live pipeline, with a model whose limits
are seconds long: a lead walked through ``sal``; an SQL nobody acts on raises one
``funnel.lead.sla_breached`` alert, also across worker restarts; an MQL nobody works is recycled."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from kafka import KafkaProducer

from funnel.config import default_model_text
from streams.clients import read_all
from tests.integration.conftest import Worker, fresh_settings, query, wait_for

SQL_HOURS = 0.005     # 18 s
MQL_DAYS = 0.0003     # 26 s
TRAITS = {"email": "cto@acme.io", "company": "Acme", "industry": "saas", "employees": 200,
          "budget": 50000, "country": "US", "job_title": "CTO"}


@pytest.fixture(scope="module")
def stack(backends, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sla")
    model = tmp / "two-step.yaml"
    model.write_text(default_model_text().replace("policy: auto", "policy: two_step")
                     .replace("sql_hours: 24", f"sql_hours: {SQL_HOURS}")
                     .replace("mql_days: 30", f"mql_days: {MQL_DAYS}"))
    settings = fresh_settings(backends, tmp, model=model, timer_interval=1.0)
    workers = [Worker(settings, tmp / "worker-1.log").start()]
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all")
    yield settings, workers, producer, tmp
    producer.close()
    workers[-1].stop()


def now(offset: float = 0.0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset)).isoformat()


def send(settings, producer, lead, messages, topic="events"):
    for m in messages:
        producer.send(settings.topic(topic), key=lead.encode(), value=orjson.dumps(m))
    producer.flush()


def event(lead, type_="track", name=None, **kw):
    m = {"messageId": uuid.uuid4().hex, "type": type_, "userId": lead, "timestamp": now(), **kw}
    if name:
        m["event"] = name
    return m


def command(lead, action):
    return {"command_id": uuid.uuid4().hex, "lead_id": lead, "action": action,
            "occurred_at": now(), "actor": "rep@example.com"}


def stage(settings, lead):
    rows = query(settings, "SELECT stage FROM leads WHERE lead_id = %s", lead)
    return rows[0][0] if rows else None


def to_sql_through_sal(settings, workers, producer, lead):
    send(settings, producer, lead, [event(lead, "identify", traits=TRAITS),
                                    event(lead, name="Content Downloaded"),
                                    event(lead, name="Demo Requested"),
                                    event(lead, name="Trial Started")])
    wait_for(lambda: stage(settings, lead) == "mql", 60, "mql (two_step: no automatic sql)",
             workers[-1])
    send(settings, producer, lead, [command(lead, "accept")], "sales-feedback")
    wait_for(lambda: stage(settings, lead) == "sal", 60, "sal", workers[-1])
    send(settings, producer, lead, [event(lead, name="Form Submitted",
                                          properties={"form": "qualification-survey"})])
    wait_for(lambda: stage(settings, lead) == "sql", 60, "sql", workers[-1])


def alerts(settings, lead):
    return [orjson.loads(r.value) for r in read_all(settings, settings.topic("alerts"), timeout=2)
            if r.key == lead.encode()]


def test_two_step_walks_a_lead_through_sal_and_the_second_filter(stack):
    settings, workers, producer, _ = stack
    lead = f"u-{uuid.uuid4().hex[:8]}"
    to_sql_through_sal(settings, workers, producer, lead)
    history = query(settings, "SELECT from_stage, to_stage, trigger FROM lead_transitions "
                              "WHERE lead_id = %s ORDER BY version", lead)
    assert history == [("iql", "mql", "qualify_marketing"), ("mql", "sal", "accept"),
                       ("sal", "sql", "pass_second_filter")]
    sal_at, sql_at = query(settings, "SELECT sal_at, sql_at FROM leads WHERE lead_id = %s",
                           lead)[0]
    assert sal_at is not None and sql_at > sal_at


def test_an_sql_nobody_acts_on_raises_one_alert_that_survives_restarts(stack):
    settings, workers, producer, tmp = stack
    lead = f"u-{uuid.uuid4().hex[:8]}"
    to_sql_through_sal(settings, workers, producer, lead)
    sql_at = query(settings, "SELECT sql_at FROM leads WHERE lead_id = %s", lead)[0][0]
    due = sql_at + timedelta(hours=SQL_HOURS)
    workers[-1].stop()                           # the deadline passes while no worker runs
    assert datetime.now(timezone.utc) < due, "the worker stopped too late for this test"
    assert alerts(settings, lead) == []
    time.sleep(max((due - datetime.now(timezone.utc)).total_seconds(), 0) + 1)
    workers.append(Worker(settings, tmp / "worker-2.log").start())
    [alert] = wait_for(lambda: alerts(settings, lead), 60, "the SLA alert", workers[-1])
    assert alert["type"] == "funnel.lead.sla_breached" and alert["subject"] == lead
    assert alert["data"]["due_at"] == due.isoformat() and alert["data"]["sla_hours"] == SQL_HOURS
    breached = wait_for(lambda: query(settings, "SELECT sla_breached_at FROM leads WHERE "
                                                "lead_id = %s", lead)[0][0], 30, "the breach")
    assert breached == due
    workers[-1].stop()                           # and once more: still exactly one alert
    workers.append(Worker(settings, tmp / "worker-3.log").start())
    wait_for(lambda: "Worker ready" in workers[-1].log.read_text(errors="replace"), 60,
             "the third worker", workers[-1])
    time.sleep(3)                                # three timer passes
    assert len(alerts(settings, lead)) == 1


def test_an_sql_sales_acts_on_in_time_raises_no_alert(stack):
    settings, workers, producer, _ = stack
    lead = f"u-{uuid.uuid4().hex[:8]}"
    to_sql_through_sal(settings, workers, producer, lead)
    send(settings, producer, lead, [command(lead, "accept")], "sales-feedback")  # acknowledged
    wait_for(lambda: query(settings, "SELECT last_sales_action_at > sql_at FROM leads WHERE "
                                     "lead_id = %s", lead)[0][0], 30, "the acknowledgement")
    time.sleep(SQL_HOURS * 3600 + 3)
    assert alerts(settings, lead) == [] and stage(settings, lead) == "sql"


def test_an_mql_nobody_works_is_recycled_by_policy(stack):
    settings, workers, producer, _ = stack
    lead = f"u-{uuid.uuid4().hex[:8]}"
    send(settings, producer, lead, [event(lead, "identify", traits=TRAITS),
                                    event(lead, name="Content Downloaded")])
    wait_for(lambda: stage(settings, lead) == "mql", 60, "mql", workers[-1])
    wait_for(lambda: stage(settings, lead) == "recycled", MQL_DAYS * 86400 + 60,
             "the expiry", workers[-1])
    [(trigger, actor, reason)] = query(
        settings, "SELECT trigger, actor, reason FROM lead_transitions WHERE lead_id = %s "
                  "AND to_stage = 'recycled'", lead)
    assert (trigger, actor) == ("expire", "policy") and "not worked within" in reason
