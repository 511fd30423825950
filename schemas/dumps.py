"""The lead's values and the lead events as JSON, written directly (compiled with the core,
``funnel.accel``).

The models of ``schemas.lead`` and ``schemas.handoff`` define these messages (the published JSON
Schemas come from them); the worker writes them with orjson, in the models' field order:
pydantic's validation and dump of each were ~5% of the worker's own time, and these helpers run
as Python were ~8% of its busy thread (py-spy). Datetimes stay datetimes: orjson writes them as
pydantic does with ``OPT_UTC_Z``. tests/unit/test_published_schemas.py and test_lead_json.py
check the bytes against the models' own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from schemas.handoff import COOLED, EVENT_TYPES, SLA_BREACHED, TRANSITIONED, LeadFacts
from schemas.lead import OrderRecord, Reason, TransitionRecord

__all__ = ["absorb_json", "cooled_event", "forward_json", "handoff_event", "link_json",
           "order_json", "reason_json", "sla_breached_event", "transition_event",
           "transition_json"]


def reason_json(r: Reason, decayed: float | None = None) -> dict[str, Any]:
    """``r`` as JSON (``decayed``: the value to write in place of its own)."""
    return {"rule": r.rule, "points": r.points, "at": r.at, "kind": r.kind,
            "detail": r.detail, "decayed": r.decayed if decayed is None else decayed}


def transition_json(t: TransitionRecord) -> dict[str, Any]:
    return {"lead_id": t.lead_id, "version": t.version, "from_stage": t.from_stage,
            "to_stage": t.to_stage, "trigger": t.trigger, "occurred_at": t.occurred_at,
            "actor": t.actor, "reason": t.reason, "reasons": [reason_json(r) for r in t.reasons]}


def order_json(o: OrderRecord) -> dict[str, Any]:
    return {"order_id": o.order_id, "occurred_at": o.occurred_at, "amount": o.amount,
            "currency": o.currency, "source": o.source}


# --- the lead events (CloudEvents 1.0, structured JSON mode) ---------------------------------


def _cloudevent(id: str, type: str, subject: str, time: datetime | None, data: dict) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": id, "source": "funnel", "type": type,
                         "subject": subject, "time": time,
                         "datacontenttype": "application/json", "data": data},
                        option=orjson.OPT_UTC_Z)


def _model(lead: LeadFacts) -> dict[str, str]:
    return {"name": lead.model_name, "version": lead.model_version}


def _data(t: TransitionRecord, lead: LeadFacts) -> dict[str, Any]:
    ft = lead.first_touch
    return {"lead_id": lead.lead_id, "stage": t.to_stage, "previous_stage": t.from_stage,
            "version": t.version, "trigger": t.trigger, "actor": t.actor, "reason": t.reason,
            "interest_score": float(lead.interest_score), "temperature": lead.temperature,
            "fit_score": float(lead.fit_score), "quality": lead.quality, "origin": lead.origin,
            "traits": lead.traits,
            "first_touch": {"source": ft.source, "medium": ft.medium, "campaign": ft.campaign},
            "model": _model(lead), "reasons": [reason_json(r) for r in t.reasons]}


def transition_event(t: TransitionRecord, lead: LeadFacts) -> bytes:
    """``funnel.lead.transitioned`` for every stage change."""
    return _cloudevent(f"{t.lead_id}:{t.version}", TRANSITIONED, t.lead_id, t.occurred_at,
                       _data(t, lead))


def handoff_event(t: TransitionRecord, lead: LeadFacts) -> bytes | None:
    """The handoff for a move into ``mql``, ``sql`` or ``customer``; None for other moves."""
    kind = EVENT_TYPES.get(t.to_stage)
    if kind is None:
        return None
    return _cloudevent(f"{t.lead_id}:{t.version}", kind, t.lead_id, t.occurred_at,
                       _data(t, lead))


def cooled_event(lead: LeadFacts, previous_temperature: str) -> bytes:
    """``funnel.lead.cooled``: the periodic pass lowered a quiet lead's temperature."""
    assert lead.interest_at is not None
    return _cloudevent(f"{lead.lead_id}:{lead.version}", COOLED, lead.lead_id, lead.interest_at, {
        "lead_id": lead.lead_id, "version": lead.version, "temperature": lead.temperature,
        "previous_temperature": previous_temperature,
        "interest_score": float(lead.interest_score), "stage": lead.stage,
        "model": _model(lead)})


def sla_breached_event(lead: LeadFacts, hours: float | None) -> bytes:
    """``funnel.lead.sla_breached`` on ``funnel.alerts``: Sales did not act on an SQL in time.
    ``id`` names the SQL it is about (``lead_id:sla:<entered>``): one alert per SQL."""
    assert lead.sla_breached_at is not None and lead.stage_entered_at is not None
    return _cloudevent(
        f"{lead.lead_id}:sla:{lead.stage_entered_at.isoformat()}", SLA_BREACHED, lead.lead_id,
        lead.sla_breached_at, {
            "lead_id": lead.lead_id, "version": lead.version, "stage": lead.stage,
            # as first published: ``+00:00``, not ``Z`` (see SlaBreachedData)
            "sql_at": lead.stage_entered_at.isoformat(),
            "due_at": lead.sla_breached_at.isoformat(),
            "sla_hours": None if hours is None else float(hours),
            "interest_score": float(lead.interest_score), "temperature": lead.temperature,
            "fit_score": float(lead.fit_score), "quality": lead.quality, "origin": lead.origin,
            "email": lead.email, "company": lead.company, "model": _model(lead)})


# --- the identity protocol (``schemas.identity``), as ``encode()`` writes its messages ---------
# The worker writes them from values it made itself (ids, the lead's own history items, each
# ``{"k", "m"}`` as ``funnel.history.compact`` made it); the partition that reads one validates
# it as any message.


def _identity(fields: dict[str, Any]) -> bytes:
    return orjson.dumps(fields, option=orjson.OPT_UTC_Z)


def link_json(from_: str, into: str, email: str | None, at: datetime | None, via: str) -> bytes:
    return _identity({"from": from_, "into": into, "kind": "link", "email": email, "at": at,
                      "via": via})


def absorb_json(from_: str, into: str, at: datetime | None, items: list[dict[str, Any]]
                ) -> bytes:
    return _identity({"from": from_, "into": into, "kind": "absorb", "at": at, "items": items,
                      "hops": 0})


def forward_json(from_: str, into: str, item: dict[str, Any], hops: int) -> bytes:
    return _identity({"from": from_, "into": into, "kind": "forward", "item": item,
                      "hops": hops})
