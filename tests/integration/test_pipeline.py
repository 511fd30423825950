"""The live pipeline on a real broker and a real PostgreSQL, fed the way an outside tracker
and the sales tool would feed it: kafka-python producers publishing JSON."""

from __future__ import annotations

import uuid

import orjson
import pytest

from streams.clients import read_all
from tests.integration.conftest import query, wait_for
from tests.integration.messages import ev

TRAITS = {"email": "cto@acme.io", "company": "Acme", "industry": "saas", "employees": 200,
          "budget": 50000, "country": "US", "job_title": "CTO"}


def publish(producer, settings, messages, topic="events", key="auto"):
    for m in messages:
        raw = m if isinstance(m, bytes) else orjson.dumps(m)
        k = (m.get("userId") or m.get("anonymousId") or m.get("lead_id")) if key == "auto" else key
        producer.send(settings.topic(topic), key=k.encode() if k else None, value=raw)
    producer.flush()


def qualifying(lead):
    return [ev(lead, "identify", traits=TRAITS), ev(lead, name="Content Downloaded", minute=1),
            ev(lead, name="Demo Requested", minute=2), ev(lead, name="Trial Started", minute=3)]


def lead_row(settings, lead_id):
    rows = query(settings, "SELECT stage, version, events_count, interest_score, revenue, origin "
                           "FROM leads WHERE lead_id = %s", lead_id)
    return rows[0] if rows else None


def records(settings, topic):
    return read_all(settings, settings.topic(topic), timeout=5)


def test_a_lead_that_clearly_qualifies_is_handed_off_to_sales(pipeline, producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    publish(producer, settings, qualifying(lead))
    wait_for(lambda: (lead_row(settings, lead) or [None])[0] == "sql", 90, "lead at sql", worker)

    handoffs = [r for r in records(settings, "handoff.sql") if r.key == lead.encode()]
    assert len(handoffs) == 1
    ce = orjson.loads(handoffs[0].value)
    assert ce["specversion"] == "1.0" and ce["type"] == "funnel.lead.sql"
    assert ce["subject"] == lead and ce["id"] == f"{lead}:{ce['data']['version']}"
    assert ce["data"]["previous_stage"] == "mql" and ce["data"]["quality"] == "high"
    assert ce["data"]["reasons"], "a handoff says why"
    assert dict(handoffs[0].headers)["content-type"] == b"application/cloudevents+json"
    stages = [orjson.loads(r.value)["data"]["stage"] for r in records(settings, "transitions")
              if r.key == lead.encode()]
    assert stages == ["mql", "sql"]
    history = query(settings, "SELECT from_stage, to_stage FROM lead_transitions "
                              "WHERE lead_id = %s ORDER BY version", lead)
    wait_for(lambda: len(query(settings, "SELECT 1 FROM lead_transitions WHERE lead_id = %s",
                               lead)) == 2, 30, "history rows")
    history = query(settings, "SELECT from_stage, to_stage FROM lead_transitions "
                              "WHERE lead_id = %s ORDER BY version", lead)
    assert history == [("iql", "mql"), ("mql", "sql")]


def test_garbage_goes_to_the_dlq_and_later_messages_are_still_processed(pipeline, producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    publish(producer, settings, [b"\x00garbage{", b'{"type": "page"}'], key="junk-key")
    publish(producer, settings, [ev(lead, "page", properties={"path": "/pricing"})])
    wait_for(lambda: lead_row(settings, lead), 60, "the later message", worker)

    dead = [r for r in records(settings, "events.dlq") if r.key == b"junk-key"]
    assert [r.value for r in dead] == [b"\x00garbage{", b'{"type": "page"}']
    headers = [dict(r.headers) for r in dead]
    assert [h["error"] for h in headers] == [b"invalid_json", b"invalid_event"]
    assert b"messageId" in headers[1]["error_detail"]
    assert all(h["source_topic"] == settings.topic("events").encode() for h in headers)
    assert all(int(h["source_offset"]) >= 0 and int(h["source_partition"]) >= 0 for h in headers)
    assert worker.alive()


def test_a_duplicate_delivery_counts_once(pipeline, producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    download = ev(lead, name="Content Downloaded")
    marker = ev(lead, "page", minute=5, properties={"path": "/x"})
    publish(producer, settings, [download, download, download, marker])
    row = wait_for(lambda: (r := lead_row(settings, lead)) and r[2] == 2 and r, 60,
                   "both distinct messages", worker)
    assert row[2] == 2                        # events_count: one download, one page view
    assert row[3] == pytest.approx(15 + 2, abs=0.01)


def test_sales_won_makes_a_customer(pipeline, producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    publish(producer, settings, qualifying(lead))
    wait_for(lambda: (lead_row(settings, lead) or [None])[0] == "sql", 90, "lead at sql", worker)
    won = {"command_id": uuid.uuid4().hex, "lead_id": lead, "action": "won",
           "occurred_at": "2026-11-21T09:00:00Z", "actor": "rep@example.com", "amount": 1200.0,
           "currency": "USD"}
    publish(producer, settings, [won, won], topic="sales-feedback")
    row = wait_for(lambda: (r := lead_row(settings, lead)) and r[0] == "customer" and r, 60,
                   "customer", worker)
    assert float(row[4]) == 1200.0            # the duplicate command counted once
    customers = [orjson.loads(r.value) for r in records(settings, "handoff.customer")
                 if r.key == lead.encode()]
    assert [c["type"] for c in customers] == ["funnel.lead.customer"]
    assert customers[0]["data"]["actor"] == "rep@example.com"


def test_a_command_the_stage_does_not_allow_is_refused_on_the_dlq(pipeline, producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    publish(producer, settings, [ev(lead, "page", properties={"path": "/"})])
    wait_for(lambda: lead_row(settings, lead), 60, "lead", worker)
    lost = {"command_id": uuid.uuid4().hex, "lead_id": lead, "action": "lost",
            "occurred_at": "2026-11-21T09:00:00Z"}
    publish(producer, settings, [lost], topic="sales-feedback")

    def refused():
        return [r for r in records(settings, "events.dlq") if r.key == lead.encode()]
    dead = wait_for(refused, 60, "the refusal on the DLQ", worker)
    h = dict(dead[0].headers)
    assert h["error"] == b"command_refused" and b"'iql'" in h["error_detail"]
    assert h["source_topic"] == settings.topic("sales-feedback").encode()
    assert lead_row(settings, lead)[0] == "iql"


def test_a_message_published_without_a_key_still_reaches_its_lead(pipeline, producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    publish(producer, settings, [ev(lead, "identify", traits={"email": "a@b.io"})], key=None)
    row = wait_for(lambda: lead_row(settings, lead), 60, "re-keyed message", worker)
    assert row[2] == 1


def test_explain_says_why_a_lead_is_hot_and_how_it_got_to_sql(pipeline, producer):
    from click.testing import CliRunner

    from streams.cli import main

    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    publish(producer, settings, qualifying(lead))
    wait_for(lambda: (lead_row(settings, lead) or [None])[0] == "sql", 90, "lead at sql", worker)
    env = {"FUNNEL_DATABASE_URL": settings.dsn(), "FUNNEL_DB_SCHEMA": settings.db_schema}
    result = CliRunner().invoke(main, ["explain", lead], env=env, terminal_width=200)
    assert result.exit_code == 0, result.output
    for needle in ("demo-request", "trial-started", "content-download", "budget",
                   "qualify_marketing", "qualify_sales", "hot", "high"):
        assert needle in result.output
    contributions = query(settings, "SELECT contributions, interest_score FROM leads "
                                    "WHERE lead_id = %s", lead)[0]
    assert sum(c["decayed"] for c in contributions[0]) == pytest.approx(contributions[1], abs=0.01)
    missing = CliRunner().invoke(main, ["explain", "nobody"], env=env)
    assert missing.exit_code != 0 and "no lead 'nobody'" in missing.output
