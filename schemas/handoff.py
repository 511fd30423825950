"""Handoff and transition events: CloudEvents 1.0, structured JSON mode. The models define them
(and their published JSON Schemas); the worker writes them directly (``schemas.dumps``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple

from schemas.lead import FirstTouch, LeadSnapshot, Origin, Quality, Reason, Stage, Temperature

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
