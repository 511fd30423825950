"""A lead's snapshot written directly is the bytes pydantic's dump of the same gives; its stored
record (the worker's ``encode``) gives the lead back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from pydantic import BaseModel

from funnel.config import load_model
from funnel.decide import process
from funnel import lead_json
from funnel.lead_json import snapshot_json
from funnel.model import Lead
from schemas.lead import FirstTouch, OrderRecord, Reason, TransitionRecord
from streams.worker.store import decode, encode

from tests.unit.helpers import simulated_history


def pydantic_bytes(lead: Lead, half_life: float | None) -> bytes:
    return lead.snapshot(half_life).model_dump_json().encode()


def test_every_simulated_lead_state_gives_the_same_snapshot_bytes_as_pydantic():
    model = load_model()
    half_life = model.interest.half_life_days
    messages, _ = simulated_history(250, seed=5, days=60)
    leads: dict[str, Lead] = {}
    checked = stages = 0
    seen_stages = set()
    for m in messages:
        key = getattr(m, "userId", None) or getattr(m, "anonymousId", None) \
            or getattr(m, "lead_id", None)
        lead = leads.get(key) or Lead(lead_id=key, model_name="m", model_version="1")
        lead, transitions = process(lead, m, model)
        leads[key] = lead
        stages += len(transitions)
        seen_stages.add(lead.stage)
        assert snapshot_json(lead, half_life) == pydantic_bytes(lead, half_life), lead.lead_id
        assert encode(lead)[9:] == lead.model_dump_json(exclude_defaults=True).encode()
        assert decode(encode(lead)).model_dump() == lead.model_dump()   # (the history apart)
        checked += 1
    assert checked == len(messages) > 1500
    assert stages > 50 and {"mql", "sql"} <= seen_stages   # states with transitions in them


def test_unusual_values_give_the_same_snapshot_bytes_as_pydantic():
    utc, plus2 = timezone.utc, timezone(timedelta(hours=2))
    t0 = datetime(2026, 1, 1, 10, 0, 0, 500, tzinfo=utc)
    reason = Reason(rule="demo", points=25, at=t0, detail="façade ✓")
    lead = Lead(
        lead_id="u-ü", version=7, stage="customer", interest_raw=-3.0, interest_at=t0,
        fit_score=1 / 3, traits={"email": "a@b.io", "company": 42, "big": 2**62, "tiny": 1e-7,
                                 "huge": 1e22, "neg": -0.0, "list": [1, None, {"x": "\u2028"}]},
        first_touch=FirstTouch(source="google"), signals={"demo": t0},
        rule_days={"demo": ["2026-01-01", 2]}, rule_hits={"demo": [t0, t0]}, seen_ids=["m"],
        first_seen_at=datetime(2026, 1, 1, 12, 0, tzinfo=plus2), customer_at=t0,
        revenue=1234.5678, revenue_by_currency={"USD": 1000.004, "EUR": 3},
        recent_orders=[OrderRecord(order_id="o", occurred_at=t0, amount=10, currency="USD",
                                   source="sales")],
        contributions=[reason, Reason(rule="old", points=1.5, at=None)],
        fit_reasons=[Reason(rule="fit", points=0.25, kind="fit")],
        transitions=[TransitionRecord(lead_id="u-ü", version=7, from_stage="sql",
                                      to_stage="customer", trigger="won", occurred_at=t0,
                                      actor="me", reasons=[reason])],
        merged_from=["a-1"], aliases=["a-2"], model_name="m", model_version="2")
    for half_life in (None, 14.0, 1e-9):
        assert snapshot_json(lead, half_life) == pydantic_bytes(lead, half_life)
    assert encode(lead)[9:] == lead.model_dump_json(exclude_defaults=True).encode()
    assert decode(encode(lead)) == lead
    blank = Lead(lead_id="x", interest_raw=-0.0, version=0, created_by_sales=0)
    assert encode(blank)[9:] == blank.model_dump_json(exclude_defaults=True).encode() \
        == b'{"lead_id":"x"}'
    assert b"big" in encode(lead.model_copy(update={"traits": {"big": 2**70}}))
    assert b'"rule":"(older, cap and floor)"' in snapshot_json(lead, 14.0)   # the floor at 0


def test_the_record_writes_every_field_of_the_lead_and_its_parts_that_is_not_its_default():
    """The record's writer takes its field list and defaults from the models: a lead with
    every field set (a field added to a model one day included) writes each of them, nested
    ones too, as pydantic does; a model field of a type it cannot write fails at import."""
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    full_reason = Reason(rule="r", points=2, at=t0, kind="fit", detail="d", decayed=1.0)
    values = {
        "lead_id": "u-1", "version": 3, "stage": "sql", "origin": "sales",
        "created_by_sales": True, "interest_raw": 4.0, "interest_at": t0, "temperature": "hot",
        "fit_score": 0.5, "quality": "high", "traits": {"email": "a@b.io"},
        "first_touch": FirstTouch(source="s", medium="m", campaign="c"),
        "orders": 1, "revenue": 5.0, "revenue_by_currency": {"USD": 5.0},
        "recent_orders": [OrderRecord(order_id="o", occurred_at=t0, amount=5, currency="USD",
                                      source="event")],
        "events_count": 9, "signals": {"demo": t0}, "aliases": ["a"], "merged_from": ["b"],
        "merged_into": "c", "rule_days": {"r": ["2026-03-01", 1]}, "rule_hits": {"r": [t0]},
        "contributions": [full_reason], "fit_reasons": [full_reason],
        "transitions": [TransitionRecord(lead_id="u-1", version=3, from_stage="mql",
                                         to_stage="sql", trigger="t", occurred_at=t0, actor="x",
                                         reason="y", reasons=[full_reason])],
        "seen_ids": ["m-1"], "model_name": "m", "model_version": "1"}
    for name, field in Lead.model_fields.items():
        if name not in values and not field.exclude:   # the datetimes not named above
            values[name] = t0
    lead = Lead(**values)
    record = encode(lead)[9:]
    assert record == lead.model_dump_json(exclude_defaults=True).encode()
    written = orjson.loads(record)
    assert set(written) == {n for n, f in Lead.model_fields.items() if not f.exclude}
    assert set(written["contributions"][0]) == set(Reason.model_fields)
    assert set(written["transitions"][0]) == set(TransitionRecord.model_fields)
    assert set(written["first_touch"]) == set(FirstTouch.model_fields)

    class Other(BaseModel):
        x: int = 0

    class WithOther(BaseModel):
        parts: list[Other] = []

    with pytest.raises(TypeError, match="WithOther.parts"):
        lead_json._fields(WithOther, lead_json.KINDS)


def test_a_lead_copy_is_apart_from_its_original_and_dumps_what_was_set():
    """``Lead`` sets fields and copies itself without pydantic's Python steps: a copy's changes
    stay in the copy, and a field set after validation is in the dump and the stored record."""
    lead = Lead(lead_id="u-1", model_name="m", model_version="1")
    copy = lead.model_copy()
    copy.version, copy.stage, copy.traits = 3, "mql", {"email": "a@b.io"}
    updated = lead.model_copy(update={"interest_raw": 7.5})
    assert (lead.version, lead.stage, lead.traits, lead.interest_raw) == (0, "iql", {}, 0.0)
    assert lead.model_fields_set == {"lead_id", "model_name", "model_version"}
    assert (copy.version, copy.stage, updated.interest_raw) == (3, "mql", 7.5)
    assert '"stage":"mql"' in copy.model_dump_json(exclude_defaults=True)
    assert decode(encode(copy)) == copy and decode(encode(updated)) == updated


def test_a_reason_the_core_builds_is_the_reason_pydantic_validates():
    """The core builds each scoring rule's ``Reason`` without validating it again: the same
    value, fields set, JSON and equality as ``Reason(...)``."""
    from funnel.decide import _reason

    t0 = datetime(2026, 1, 1, 10, 0, 0, 500, tzinfo=timezone.utc)
    built, validated = _reason("demo", 25.0, t0), Reason(rule="demo", points=25.0, at=t0)
    assert built == validated and built.__dict__ == validated.__dict__
    assert built.model_fields_set == validated.model_fields_set
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.model_dump_json(exclude_defaults=True) == \
        validated.model_dump_json(exclude_defaults=True)
