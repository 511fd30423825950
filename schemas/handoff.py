"""Handoff and transition events: CloudEvents 1.0, structured JSON mode."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple

import orjson

from schemas.lead import FirstTouch, Origin, Quality, Reason, Stage, Temperature, reason_json

from pydantic import BaseModel, ConfigDict, Field, create_model, field_serializer

EVENT_TYPES = {
    "mql": "funnel.lead.mql",
    "sql": "funnel.lead.sql",
    "customer": "funnel.lead.customer",
}
TRANSITIONED = "funnel.lead.transitioned"
COOLED = "funnel.lead.cooled"
SLA_BREACHED = "funnel.lead.sla_breached"


class CloudEvent(BaseModel):
    """A CloudEvent envelope. ``id`` is ``lead_id:version``: re-sending keeps it."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = "funnel"
    type: str
    subject: str
    time: datetime
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)


# --- typed payloads: what ``data`` carries for each event type (published as JSON Schema) ----

class ModelRef(BaseModel):
    name: str
    version: str


class LeadEventData(BaseModel):
    """``data`` of ``funnel.lead.mql|sql|customer`` and ``funnel.lead.transitioned``."""

    model_config = ConfigDict(title="LeadEventData")

    lead_id: str
    stage: Stage
    previous_stage: Stage
    version: int = Field(description="the lead version this stage change produced")
    trigger: str = Field(description="what moved the lead: qualify_marketing, accept, won, …")
    actor: str | None = None
    reason: str | None = None
    interest_score: float
    temperature: Temperature
    fit_score: float
    quality: Quality
    origin: Origin
    traits: dict[str, Any]
    first_touch: FirstTouch
    model: ModelRef
    reasons: list[Reason]


class CooledData(BaseModel):
    """``data`` of ``funnel.lead.cooled``."""

    lead_id: str
    version: int
    temperature: Temperature
    previous_temperature: Temperature
    interest_score: float
    stage: Stage
    model: ModelRef


class SlaBreachedData(BaseModel):
    """``data`` of ``funnel.lead.sla_breached``."""

    lead_id: str
    version: int
    stage: Stage
    sql_at: datetime
    due_at: datetime
    sla_hours: float | None
    interest_score: float
    temperature: Temperature
    fit_score: float
    quality: Quality
    origin: Origin
    email: str | None
    company: str | None
    model: ModelRef

    @field_serializer("sql_at", "due_at")
    def _iso(self, v: datetime) -> str:
        return v.isoformat()   # as first published: ``+00:00``, not ``Z``


def _typed(name: str, kinds: tuple[str, ...], data: type[BaseModel], doc: str) -> type[BaseModel]:
    """A CloudEvent model whose ``type`` is one of ``kinds`` and whose ``data`` is ``data``."""
    fields: dict[str, Any] = {
        "type": (Literal[kinds], ...),  # type: ignore[valid-type]
        "data": (data, ...),
    }
    return create_model(name, __base__=CloudEvent, __doc__=doc, **fields)


class LeadFacts(NamedTuple):
    """What the lead events say of a lead: a snapshot's fields, without its explanations (made
    once per change by ``funnel.lead_json.facts``, or from a snapshot)."""

    lead_id: str
    version: int
    stage: str
    interest_score: float
    temperature: str
    fit_score: float
    quality: str
    origin: str
    traits: dict[str, Any]
    first_touch: FirstTouch
    email: str | None
    company: str | None
    model_name: str
    model_version: str
    interest_at: datetime | None
    stage_entered_at: datetime | None
    sla_breached_at: datetime | None

    @classmethod
    def of(cls, snapshot: "LeadSnapshot") -> "LeadFacts":
        return cls(*(getattr(snapshot, f) for f in cls._fields))


# The events are written as JSON directly (orjson), in the models' field order: pydantic's
# validation and dump of each were ~5% of the worker's own time. tests/unit/
# test_published_schemas.py checks them against the JSON Schemas of the models above, and
# against the bytes the models themselves give.

def _cloudevent(id: str, type: str, subject: str, time: datetime | None, data: dict) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": id, "source": "funnel", "type": type,
                         "subject": subject, "time": time,
                         "datacontenttype": "application/json", "data": data},
                        option=orjson.OPT_UTC_Z)


def _model(lead: LeadFacts) -> dict[str, str]:
    return {"name": lead.model_name, "version": lead.model_version}


def _data(t: "TransitionRecord", lead: LeadFacts) -> dict[str, Any]:
    ft = lead.first_touch
    return {"lead_id": lead.lead_id, "stage": t.to_stage, "previous_stage": t.from_stage,
            "version": t.version, "trigger": t.trigger, "actor": t.actor, "reason": t.reason,
            "interest_score": float(lead.interest_score), "temperature": lead.temperature,
            "fit_score": float(lead.fit_score), "quality": lead.quality, "origin": lead.origin,
            "traits": lead.traits,
            "first_touch": {"source": ft.source, "medium": ft.medium, "campaign": ft.campaign},
            "model": _model(lead), "reasons": [reason_json(r) for r in t.reasons]}


def transition_event(t: "TransitionRecord", lead: LeadFacts) -> bytes:
    """``funnel.lead.transitioned`` for every stage change."""
    return _cloudevent(f"{t.lead_id}:{t.version}", TRANSITIONED, t.lead_id, t.occurred_at,
                       _data(t, lead))


def handoff_event(t: "TransitionRecord", lead: LeadFacts) -> bytes | None:
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


from schemas.lead import LeadSnapshot, TransitionRecord  # noqa: E402  (types for the above)

LeadMql = _typed("LeadMql", (EVENT_TYPES["mql"],), LeadEventData,
                 "A lead became a Marketing Qualified Lead (funnel.handoff.mql).")
LeadSql = _typed("LeadSql", (EVENT_TYPES["sql"],), LeadEventData,
                 "A lead is handed to Sales (funnel.handoff.sql).")
LeadCustomer = _typed("LeadCustomer", (EVENT_TYPES["customer"],), LeadEventData,
                      "A lead became a customer (funnel.handoff.customer).")
LeadTransitioned = _typed("LeadTransitioned", (TRANSITIONED,), LeadEventData,
                          "Any stage change (funnel.transitions).")
LeadCooled = _typed("LeadCooled", (COOLED,), CooledData,
                    "A quiet lead's temperature dropped (funnel.transitions).")
LeadSlaBreached = _typed("LeadSlaBreached", (SLA_BREACHED,), SlaBreachedData,
                         "Sales did not act on an SQL within the SLA (funnel.alerts).")
