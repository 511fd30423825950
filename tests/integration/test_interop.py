"""Funnel as a citizen of an event platform, on a real broker and PostgreSQL: handoffs read with
the ``cloudevents`` SDK's Kafka binding, real topic messages valid against the published JSON
Schemas, the DLQ as a tool (list, count, replay after a fix), and hostile payloads on the topic
that neither stop the worker nor lose a valid event."""

from __future__ import annotations

import os
import uuid

import orjson
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from schemas.events import InvalidMessage, parse_event
from schemas.export import json_schemas
from streams.clients import read_all
from tests.integration.conftest import query, wait_for
from tests.integration.fuzz import JSON, dumps, mutated
from tests.integration.messages import ev

TRAITS = {"email": "cfo@initech.io", "company": "Initech", "industry": "saas", "employees": 500,
          "budget": 60000, "country": "US", "job_title": "CFO"}


def cmd(lead, action, minute=30, **kw):
    return {"command_id": uuid.uuid4().hex, "lead_id": lead, "action": action,
            "occurred_at": f"2026-11-20T11:{minute:02d}:00Z", "actor": "rep@initech.io", **kw}


def send(producer, settings, topic, messages, key=None):
    for m in messages:
        k = key or m.get("userId") or m.get("lead_id")
        producer.send(settings.topic(topic), key=k.encode(),
                      value=m if isinstance(m, bytes) else orjson.dumps(m))
    producer.flush()


def stage_of(settings, lead_id):
    rows = query(settings, "SELECT stage FROM leads WHERE lead_id = %s", lead_id)
    return rows[0][0] if rows else None


def cli(settings, *args):
    from streams.cli import main

    env = {"FUNNEL_BROKER": settings.broker, "FUNNEL_DATABASE_URL": settings.dsn(),
           "FUNNEL_TOPIC_PREFIX": settings.topic_prefix}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def test_every_handoff_type_parses_with_the_cloudevents_kafka_binding(pipeline, producer):
    from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event

    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    send(producer, settings, "events", [
        ev(lead, "identify", traits=TRAITS), ev(lead, name="Content Downloaded", minute=1),
        ev(lead, name="Demo Requested", minute=2), ev(lead, name="Trial Started", minute=3)])
    wait_for(lambda: stage_of(settings, lead) == "sql", 60, "sql", worker)
    send(producer, settings, "sales-feedback", [cmd(lead, "won", amount=1000.0)])
    wait_for(lambda: stage_of(settings, lead) == "customer", 60, "customer", worker)
    schemas = json_schemas()
    for stage, name in (("mql", "LeadMql"), ("sql", "LeadSql"), ("customer", "LeadCustomer")):
        records = [r for r in read_all(settings, settings.topic(f"handoff.{stage}"), timeout=5)
                   if r.key == lead.encode()]
        assert len(records) == 1, stage
        r = records[0]
        headers = {k: v for k, v in r.headers}
        assert headers == {"content-type": b"application/cloudevents+json"}
        assert not any(k.lower().startswith("ce_") for k in headers)
        event = from_kafka_event(KafkaMessage(headers=headers, key=r.key, value=r.value))
        assert event.get_type() == f"funnel.lead.{stage}"
        assert event.get_subject() == lead and event.get_source() == "funnel"
        assert event.get_id().startswith(f"{lead}:") and event.get_data()["stage"] == stage
        v = Draft202012Validator(schemas[name], format_checker=FormatChecker())
        assert not [e.message for e in v.iter_errors(orjson.loads(r.value))]
    snapshots = [orjson.loads(r.value) for r in read_all(settings, settings.topic("leads"),
                                                         timeout=5) if r.key == lead.encode()]
    v = Draft202012Validator(schemas["LeadSnapshot"], format_checker=FormatChecker())
    assert snapshots and all(not list(v.iter_errors(s)) for s in snapshots)


def test_the_dlq_lists_counts_and_replays_a_command_after_the_lead_can_take_it(pipeline,
                                                                               producer):
    settings, worker = pipeline
    lead = f"u-{uuid.uuid4().hex[:8]}"
    early_accept = cmd(lead, "accept", minute=0)
    deep: dict = {"x": 1}
    for _ in range(9):
        deep = {"d": deep}
    send(producer, settings, "events", [ev(lead, "page", properties={"path": "/"})])
    send(producer, settings, "sales-feedback", [early_accept])        # an iql cannot be accepted
    send(producer, settings, "events", [b"{broken", orjson.dumps(ev(lead, "page",
                                                                    properties=deep))], key=lead)
    letters = wait_for(lambda: (r := cli(settings, "dlq", "--json", "--limit", "0")) and [
        orjson.loads(line) for line in r.output.splitlines()
        if orjson.loads(line)["key"] == lead] or None, 60, "three dead letters", worker)
    wait_for(lambda: len([d for d in orjson.loads("[" + ",".join(
        cli(settings, "dlq", "--json", "--limit", "0").output.splitlines()) + "]")
        if d["key"] == lead]) == 3, 30, "all three", worker)
    letters = [orjson.loads(line) for line in cli(settings, "dlq", "--json", "--limit", "0")
               .output.splitlines()]
    mine = {d["error"]: d for d in letters if d["key"] == lead}
    assert set(mine) == {"command_refused", "invalid_json", "limit_exceeded"}
    assert "max_depth" in mine["limit_exceeded"]["detail"]
    refused = mine["command_refused"]
    assert refused["source_topic"] == settings.topic("sales-feedback")
    counts = orjson.loads(cli(settings, "dlq", "--count", "--json").output)
    assert counts["command_refused"] >= 1 and counts["invalid_json"] >= 1
    table = cli(settings, "dlq", "--reason", "limit_exceeded").output
    assert "max_depth" in table and "invalid_json" not in table

    # the fix: the lead becomes an MQL, and now the same accept moves it to SQL
    send(producer, settings, "events", [ev(lead, "identify", traits=TRAITS, minute=5),
                                        ev(lead, name="Content Downloaded", minute=6)])
    wait_for(lambda: stage_of(settings, lead) == "mql", 60, "mql", worker)
    dry = cli(settings, "dlq", "replay", "--at", refused["dlq"], "--dry-run")
    assert "would replay" in dry.output and stage_of(settings, lead) == "mql"
    done = cli(settings, "dlq", "replay", "--at", refused["dlq"])
    assert done.exit_code == 0 and "replayed 1" in done.output
    wait_for(lambda: stage_of(settings, lead) == "sql", 60, "sql after the replay", worker)
    rows = query(settings, "SELECT trigger, actor FROM lead_transitions WHERE lead_id = %s "
                 "AND to_stage = 'sql'", lead)
    assert rows == [("accept", "rep@initech.io")]


def test_dlq_commands_say_what_is_wrong_with_their_arguments(pipeline):
    settings, _ = pipeline
    from streams.cli import main

    env = {"FUNNEL_BROKER": settings.broker, "FUNNEL_TOPIC_PREFIX": settings.topic_prefix}
    r = CliRunner().invoke(main, ["dlq", "replay"], env=env)
    assert r.exit_code == 2 and "--at PARTITION:OFFSET or --reason" in r.output
    r = CliRunner().invoke(main, ["dlq", "replay", "--at", "three"], env=env)
    assert r.exit_code == 2 and "is not PARTITION:OFFSET" in r.output
    r = CliRunner().invoke(main, ["dlq", "replay", "--at", "0:999999"], env=env)
    assert r.exit_code == 1 and "no dead letter at 0:999999" in r.output


# --- hostile payloads on the topic --------------------------------------------------------

def _nest(depth):
    d = {"leaf": "x"}
    for _ in range(depth):
        d = {"n": d}
    return d


MUTATED = mutated({"messageId": "m", "type": "track", "event": "Demo Requested", "userId": "fz",
                   "timestamp": "2026-11-20T10:00:00Z"})
HOSTILE = st.one_of(
    st.binary(max_size=200),
    JSON.map(dumps),
    MUTATED.map(dumps),
    st.integers(min_value=7, max_value=40).map(lambda depth: dumps(
        {"messageId": "deep", "type": "page", "userId": "fz", "timestamp": "2026-11-20T10:00:00Z",
         "properties": _nest(depth)})),
)


FUZZ_KEY = "fuzz-hostile"
SENT: list[tuple[bytes, str]] = []    # (hostile payload, the valid sentinel lead sent after it)


@hsettings(max_examples=int(os.environ.get("FUNNEL_FUZZ_EXAMPLES", "120")), deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=HOSTILE)
def test_hostile_payloads_on_the_topic_stop_nothing_and_lose_no_valid_event(pipeline, producer,
                                                                             payload):
    settings, _ = pipeline
    sentinel = f"fz-{uuid.uuid4().hex[:10]}"
    if isinstance(payload, bytes) and b"messageId" in payload:
        # unique ids, so that hostile messages that happen to be valid are not duplicates
        payload = payload.replace(b'"m"', f'"{uuid.uuid4().hex}"'.encode(), 1)
    producer.send(settings.topic("events"), key=FUZZ_KEY.encode(), value=payload)
    producer.send(settings.topic("events"), key=sentinel.encode(),
                  value=orjson.dumps(ev(sentinel, "page", properties={"path": "/"})))
    SENT.append((payload, sentinel))


def test_after_the_fuzz_every_valid_event_was_taken_and_every_invalid_one_dead_lettered(
        pipeline, producer):
    settings, worker = pipeline
    producer.flush()
    assert SENT, "the fuzz test must run first"
    sentinels = [s for _, s in SENT]
    wait_for(lambda: query(settings, "SELECT count(*) FROM leads WHERE lead_id = ANY(%s) "
                           "AND events_count = 1", sentinels)[0][0] == len(sentinels), 120,
             "every sentinel lead", worker)
    invalid = 0
    for payload, _ in SENT:
        try:
            parse_event(payload)
        except InvalidMessage:
            invalid += 1
    assert 0 < invalid < len(SENT) * 2
    wait_for(lambda: len([r for r in read_all(settings, settings.topic("events.dlq"), timeout=5)
                          if r.key == FUZZ_KEY.encode()]) == invalid, 60,
             f"{invalid} dead letters from the fuzz", worker)
    assert worker.alive()
