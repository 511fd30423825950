"""The published schemas: JSON Schemas from the pydantic models, checked with an independent
validator (jsonschema) against messages the core really produces, and the AsyncAPI 3.0 document
checked against the official AsyncAPI 3.0 JSON Schema (``@asyncapi/specs``)."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import orjson
from click.testing import CliRunner
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker

from funnel.config import load_model
from funnel.decide import new_lead, process
from funnel.timers import tick
from schemas.export import CHANNELS, asyncapi, json_schemas
from schemas.dumps import cooled_event, handoff_event, sla_breached_event, transition_event
from schemas.handoff import LeadCooled, LeadFacts, LeadSlaBreached, LeadTransitioned
from tests.tools.fetch_specs import ASYNCAPI

ASYNCAPI_SPEC = ASYNCAPI.target
from tests.unit.helpers import at, command, event, identify

MODEL = load_model()
SCHEMAS = json_schemas()


def validator(name: str) -> Draft202012Validator:
    assert "date-time" in FormatChecker().checkers   # else times would go unchecked
    return Draft202012Validator(SCHEMAS[name], format_checker=FormatChecker())


def as_json(model) -> object:
    return orjson.loads(model if isinstance(model, bytes) else model.model_dump_json())


def lifecycle_samples() -> dict[str, list[object]]:
    """Messages as the pipeline emits them, for one lead walked to customer."""
    lead, samples = new_lead("u-1", MODEL), {}
    messages = [identify(when=at(0)), event(name="Content Downloaded", when=at(1)),
                event(name="Demo Requested", when=at(2)), event(name="Trial Started", when=at(3)),
                command("won", when=at(60), amount=900.0, currency="EUR")]
    for m in messages:
        lead, moves = process(lead, m, MODEL)
        snap = lead.snapshot(MODEL.interest.half_life_days)
        for t in moves:
            samples.setdefault("LeadTransitioned", []).append(
                as_json(transition_event(t, LeadFacts.of(snap))))
            h = handoff_event(t, LeadFacts.of(snap))
            if h is not None:
                name = {"mql": "LeadMql", "sql": "LeadSql", "customer": "LeadCustomer"}[t.to_stage]
                samples.setdefault(name, []).append(as_json(h))
        samples.setdefault("LeadSnapshot", []).append(as_json(snap))
    return samples


def test_every_schema_is_a_valid_json_schema():
    for schema in SCHEMAS.values():
        Draft202012Validator.check_schema(schema)
    assert {m for ch in CHANNELS for m in ch.messages} == set(SCHEMAS)


def test_handoffs_transitions_and_snapshots_the_core_emits_match_their_schemas():
    samples = lifecycle_samples()
    assert {"LeadMql", "LeadSql", "LeadCustomer", "LeadTransitioned", "LeadSnapshot"} <= set(samples)
    for name, messages in samples.items():
        v = validator(name)
        for m in messages:
            assert not list(v.iter_errors(m)), (name, [e.message for e in v.iter_errors(m)])
    # and a handoff of one kind is not valid as another
    assert list(validator("LeadMql").iter_errors(samples["LeadSql"][0]))


def test_cooled_and_sla_breached_events_match_their_schemas():
    lead = new_lead("u-2", MODEL)
    for m in [identify(lead="u-2", when=at(0)), event(name="Content Downloaded", lead="u-2",
              when=at(1)), event(name="Demo Requested", lead="u-2", when=at(2)),
              event(name="Trial Started", lead="u-2", when=at(3))]:
        lead, _ = process(lead, m, MODEL)
    breached, _ = tick(lead, at(3) + timedelta(days=2), MODEL, cooling=False, deadlines=True)
    assert breached.sla_breached_at is not None
    alert = sla_breached_event(LeadFacts.of(breached.snapshot()), MODEL.lifecycle.sla.sql_hours)
    assert not list(validator("LeadSlaBreached").iter_errors(as_json(alert)))
    cooled = cooled_event(LeadFacts.of(lead.snapshot()), "hot")
    assert not list(validator("LeadCooled").iter_errors(as_json(cooled)))
    # written directly, they are the bytes their models write
    assert LeadSlaBreached.model_validate_json(alert).model_dump_json().encode() == alert
    assert LeadCooled.model_validate_json(cooled).model_dump_json().encode() == cooled


def test_the_lead_events_written_directly_are_the_bytes_their_models_write():
    from funnel.lead_json import facts
    from schemas.handoff import LeadCustomer, LeadMql, LeadSql
    from tests.unit.helpers import simulated_history

    typed = {"mql": LeadMql, "sql": LeadSql, "customer": LeadCustomer}
    messages, _ = simulated_history(150, seed=9, days=60)
    leads: dict = {}
    seen = 0
    for m in messages:
        key = getattr(m, "userId", None) or getattr(m, "anonymousId", None) \
            or getattr(m, "lead_id", None)
        lead, moves = process(leads.get(key) or new_lead(key, MODEL), m, MODEL)
        leads[key] = lead
        for t in moves:
            assert facts(lead) == LeadFacts.of(lead.snapshot())
            moved = transition_event(t, facts(lead))
            assert LeadTransitioned.model_validate_json(moved).model_dump_json().encode() == moved
            handoff = handoff_event(t, facts(lead))
            if t.to_stage in typed:
                assert handoff is not None and handoff != moved
                assert typed[t.to_stage].model_validate_json(handoff).model_dump_json().encode() \
                    == handoff
            else:
                assert handoff is None
            seen += 1
    assert seen > 100


def test_the_identity_messages_written_directly_are_the_bytes_their_models_write():
    """The worker writes its link, absorb and forward messages with ``schemas.dumps``: the
    bytes the models' ``encode()`` gives, for the histories of simulated leads (events and
    commands) and unusual values, and each reads back as the message it stands for."""
    from funnel.merge import known_items
    from schemas.dumps import absorb_json, forward_json, link_json
    from schemas.identity import Absorb, Forward, HistoryItem, Link, parse_identity
    from tests.unit.helpers import simulated_history

    messages, _ = simulated_history(150, seed=4, days=60)
    leads: dict = {}
    for m in messages:
        key = getattr(m, "userId", None) or getattr(m, "anonymousId", None) \
            or getattr(m, "lead_id", None)
        try:
            leads[key], _ = process(leads.get(key) or new_lead(key, MODEL), m, MODEL)
        except ValueError:
            pass   # a command the lead's stage refuses
    histories = [known_items(lead) for lead in leads.values()]
    assert sum(map(len, histories)) > 500 and any(
        i["k"] == "c" for items in histories for i in items)
    t = at(0)
    for lead, items in zip(leads.values(), histories):
        absorb = absorb_json(lead.lead_id, "u-ü", lead.last_activity_at, items)
        assert absorb == Absorb.model_validate({"from": lead.lead_id, "into": "u-ü",
                                                "at": lead.last_activity_at,
                                                "items": items}).encode()
        assert parse_identity(absorb).items == [HistoryItem(**i) for i in items]
        for item in items[:3]:
            forward = forward_json(lead.lead_id, "u-1", item, 2)
            assert forward == Forward.model_validate({"from": lead.lead_id, "into": "u-1",
                                                      "item": item, "hops": 2}).encode()
    for email, when, via in (("a@b.io", t, "identify"), (None, None, "alias"),
                             ("é\u2028\"q", t + timedelta(microseconds=7), "identify")):
        link = link_json("a-1", "u-1", email, when, via)
        assert link == Link.model_validate({"from": "a-1", "into": "u-1", "email": email,
                                            "at": when, "via": via}).encode()
        assert parse_identity(link) == Link(from_="a-1", into="u-1", email=email, at=when,
                                            via=via)


def test_interaction_event_schema_says_what_the_parser_says():
    v = validator("InteractionEvent")
    good = {"messageId": "m1", "type": "track", "event": "Demo Requested", "userId": "u",
            "timestamp": "2026-11-20T10:00:00Z", "properties": {}, "extra": 1}
    assert not list(v.iter_errors(good))
    for bad in ({k: val for k, val in good.items() if k != "userId"},     # no id at all
                {k: val for k, val in good.items() if k != "event"},      # a track without event
                {**good, "type": "rocket"}, {**good, "timestamp": "yesterday"}):
        assert list(v.iter_errors(bad)), bad
    command_v = validator("SalesCommand")
    assert list(command_v.iter_errors({"command_id": "c", "lead_id": "u", "action": "celebrate",
                                       "occurred_at": "2026-11-20T10:00:00Z"}))


def asyncapi_validator() -> Draft7Validator:
    assert ASYNCAPI_SPEC.exists(), f"{ASYNCAPI_SPEC} is missing: run 'make test' (it fetches it)"
    return Draft7Validator(orjson.loads(ASYNCAPI_SPEC.read_bytes()))


def test_the_asyncapi_document_is_valid_asyncapi_3():
    v = asyncapi_validator()
    doc = asyncapi("funnel.", 8)
    assert not [e.message for e in v.iter_errors(doc)]
    addresses = {ch["address"] for ch in doc["channels"].values()}
    assert {"funnel.events", "funnel.sales-feedback", "funnel.handoff.sql", "funnel.leads",
            "funnel.events.dlq", "funnel.alerts", "funnel.transitions"} <= addresses
    broken = copy.deepcopy(doc)
    broken["operations"]["consume_events"]["action"] = "shout"
    assert list(v.iter_errors(broken))   # the validator does reject what is wrong


def test_funnel_schema_writes_the_files(tmp_path: Path):
    from streams.cli import main

    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"asyncapi.json", "asyncapi.yaml", "LeadSql.schema.json",
            "InteractionEvent.schema.json"} <= names
    doc = orjson.loads((tmp_path / "out" / "asyncapi.json").read_bytes())
    assert not list(asyncapi_validator().iter_errors(doc))
