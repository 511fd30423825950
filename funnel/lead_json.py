"""A lead written as JSON directly: its snapshot, and what its events say of it.

A snapshot is written per changed lead per batch. Built as a dict with the datetimes left to
orjson: 26 µs against 45 µs for pydantic's model and dump (simulated leads). It gives the bytes
the model would: tests/unit/test_lead_json.py compares them on every state of simulated leads
and on unusual values. The stored record (``record_json``: the lead without its default values,
written per changed lead per batch) is built the same way, its field list and defaults taken
from the model itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from funnel.model import Lead, text_or_none
from funnel.scoring import decayed_values, shown, top_reasons
from schemas.handoff import LeadFacts
from schemas.dumps import order_json, reason_json, transition_json
from schemas.lead import FirstTouch, OrderRecord, Reason, TransitionRecord

__all__ = ["facts", "record_json", "snapshot_json"]


def facts(lead: Lead) -> LeadFacts:
    """What the lead events (transitions, handoffs, alerts) say of ``lead``: its snapshot's
    values, without the explanations."""
    return LeadFacts(
        lead.lead_id, lead.version, lead.stage, round(shown(lead.interest_raw), 3),
        lead.temperature, round(lead.fit_score, 3), lead.quality, lead.origin, lead.traits,
        lead.first_touch, text_or_none(lead.traits.get("email")),
        text_or_none(lead.traits.get("company")), lead.model_name, lead.model_version,
        lead.interest_at, lead.stage_entered_at, lead.sla_breached_at)


def snapshot_json(lead: Lead, half_life_days: float | None = None) -> bytes:
    """``lead.snapshot(half_life_days).model_dump_json()``, the same bytes, built directly."""
    decayed, rest = decayed_values(lead.contributions, lead.interest_raw, lead.interest_at,
                                   half_life_days)
    contributions = [reason_json(r, d) for r, d in zip(lead.contributions, decayed)]
    if rest is not None:
        contributions.append(reason_json(lead.adjustment(rest)))
    ft = lead.first_touch
    return _dumps(lambda: lead.snapshot(half_life_days).model_dump_json().encode(), {
        "lead_id": lead.lead_id, "version": lead.version, "stage": lead.stage,
        "interest_score": round(shown(lead.interest_raw), 3), "temperature": lead.temperature,
        "fit_score": round(lead.fit_score, 3), "quality": lead.quality, "origin": lead.origin,
        "email": text_or_none(lead.traits.get("email")),
        "company": text_or_none(lead.traits.get("company")), "traits": lead.traits,
        "first_touch": {"source": ft.source, "medium": ft.medium, "campaign": ft.campaign},
        "first_seen_at": lead.first_seen_at, "last_activity_at": lead.last_activity_at,
        "stage_entered_at": lead.stage_entered_at, "mql_at": lead.mql_at,
        "sql_at": lead.sql_at, "customer_at": lead.customer_at,
        "sal_at": lead.sal_at, "recycled_at": lead.recycled_at,
        "disqualified_at": lead.disqualified_at,
        "last_sales_action_at": lead.last_sales_action_at,
        "sla_breached_at": lead.sla_breached_at, "merged_into": lead.merged_into,
        "merged_from": lead.merged_from, "aliases": lead.aliases, "orders": lead.orders,
        "revenue": round(lead.revenue, 2),
        "revenue_by_currency": {k: round(v, 2) for k, v in lead.revenue_by_currency.items()},
        "recent_orders": [order_json(o) for o in lead.recent_orders],
        "events_count": lead.events_count, "model_name": lead.model_name,
        "model_version": lead.model_version,
        "reasons": [reason_json(r) for r in top_reasons(lead.contributions, lead.fit_reasons)],
        "contributions": contributions,
        "fit_reasons": [reason_json(r) for r in lead.fit_reasons],
        "interest_at": lead.interest_at,
        "transitions": [transition_json(t) for t in lead.transitions],
    })


def _dumps(pydantic: Callable[[], bytes], fields: dict[str, Any]) -> bytes:
    """``fields`` as JSON; pydantic's own dump for a value orjson will not write (an integer
    past 64 bits: none comes in through the parsers, which are orjson's too)."""
    try:
        return orjson.dumps(fields, option=orjson.OPT_UTC_Z)
    except TypeError:
        return pydantic()


# --- the stored record: the lead without its default values ----------------------------------

PLAIN, REASONS, TRANSITIONS, ORDERS, TOUCH = range(5)
KINDS: dict[object, int] = {list[Reason]: REASONS, list[TransitionRecord]: TRANSITIONS,
                            list[OrderRecord]: ORDERS, FirstTouch: TOUCH}
REQUIRED = object()   # a field without a default: never left out


def _fields(model: type[BaseModel], kinds: dict[object, int]) -> list[tuple[str, object, int]]:
    """(name, default, how to write it) of each field ``model`` dumps, in its order. A field of
    a model type not in ``kinds`` fails here, at import, not in a dump."""
    out = []
    for name, f in model.model_fields.items():
        if f.exclude:
            continue
        kind = kinds.get(f.annotation, PLAIN)
        if kind == PLAIN and _has_model(f.annotation):
            raise TypeError(f"{model.__name__}.{name}: no JSON writer for {f.annotation}")
        default = (f.default_factory() if f.default_factory is not None  # type: ignore[call-arg]
                   else REQUIRED if f.default is PydanticUndefined else f.default)
        out.append((name, default, kind))
    return out


def _has_model(annotation: object) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_has_model(a) for a in getattr(annotation, "__args__", ()))


LEAD_FIELDS = _fields(Lead, KINDS)
REASON_FIELDS = _fields(Reason, {})
# a lead holds dozens of reasons (its contributions, its fit, its moves'): written by hand below,
# for exactly these fields and defaults
if [(n, d) for n, d, _ in REASON_FIELDS] != [("rule", REQUIRED), ("points", REQUIRED),
                                              ("at", None), ("kind", "interest"),
                                              ("detail", None), ("decayed", None)]:
    raise TypeError("Reason's fields changed: update funnel.lead_json._reason")
TRANSITION_FIELDS = _fields(TransitionRecord, {list[Reason]: REASONS})
ORDER_FIELDS = _fields(OrderRecord, {})
TOUCH_FIELDS = _fields(FirstTouch, {})


def record_json(lead: Lead) -> bytes:
    """``lead.model_dump_json(exclude_defaults=True)``, the same bytes, built directly (the
    stored record: pydantic's dump of it was ~15% of a loaded worker's busy thread)."""
    return _dumps(lambda: lead.model_dump_json(exclude_defaults=True).encode(),
                  _without_defaults(lead, LEAD_FIELDS))


def _without_defaults(m: BaseModel, fields: list[tuple[str, object, int]]) -> dict[str, Any]:
    values = m.__dict__
    out: dict[str, Any] = {}
    for name, default, kind in fields:
        v = values[name]
        if default is not REQUIRED and v == default:
            continue
        if kind == PLAIN:
            out[name] = v
        elif kind == REASONS:
            out[name] = [_reason(r) for r in v]
        elif kind == TRANSITIONS:
            out[name] = [_without_defaults(t, TRANSITION_FIELDS) for t in v]
        elif kind == ORDERS:
            out[name] = [_without_defaults(o, ORDER_FIELDS) for o in v]
        else:
            out[name] = _without_defaults(v, TOUCH_FIELDS)
    return out


def _reason(r: Reason) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": r.rule, "points": r.points}
    if r.at is not None:
        out["at"] = r.at
    if r.kind != "interest":
        out["kind"] = r.kind
    if r.detail is not None:
        out["detail"] = r.detail
    if r.decayed is not None:
        out["decayed"] = r.decayed
    return out
