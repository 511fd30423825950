"""The lead snapshot on ``funnel.leads`` (compacted, keyed by ``lead_id``): the latest state."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Stage = Literal["iql", "mql", "sal", "sql", "customer", "recycled", "disqualified"]
STAGES: tuple[str, ...] = get_args(Stage)   # the funnel's stages, in order: the one definition
Temperature = Literal["hot", "warm", "cold"]
Quality = Literal["high", "medium", "low"]
Origin = Literal["marketing", "sales", "referral"]


class Reason(BaseModel):
    """One contribution to a score: which rule, how many points, when."""

    model_config = ConfigDict(frozen=True)

    rule: str
    points: float
    at: datetime | None = None
    kind: Literal["interest", "fit", "adjustment"] = "interest"
    detail: str | None = None
    decayed: float | None = None   # what the points are worth at the score's time


class TransitionRecord(BaseModel):
    """A stage change of one lead; ``version`` is the lead version it produced."""

    model_config = ConfigDict(frozen=True)

    lead_id: str
    version: int
    from_stage: Stage
    to_stage: Stage
    trigger: str
    occurred_at: datetime
    actor: str | None = None
    reason: str | None = None
    reasons: list[Reason] = Field(default_factory=list)


class OrderRecord(BaseModel):
    """One purchase: an ``Order Completed`` event or a sales ``won`` (``order_id`` is the
    message's ``messageId`` or the command's ``command_id``)."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    occurred_at: datetime
    amount: float
    currency: str
    source: Literal["event", "sales"]


class FirstTouch(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str | None = None
    medium: str | None = None
    campaign: str | None = None


class LeadSnapshot(BaseModel):
    """What other services see of a lead."""

    model_config = ConfigDict(frozen=True)

    lead_id: str
    version: int
    stage: Stage
    interest_score: float
    temperature: Temperature
    fit_score: float
    quality: Quality
    origin: Origin
    email: str | None = None
    company: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict)
    first_touch: FirstTouch = Field(default_factory=FirstTouch)
    first_seen_at: datetime | None = None
    last_activity_at: datetime | None = None
    stage_entered_at: datetime | None = None
    mql_at: datetime | None = None
    sql_at: datetime | None = None
    customer_at: datetime | None = None
    sal_at: datetime | None = None
    recycled_at: datetime | None = None
    disqualified_at: datetime | None = None
    last_sales_action_at: datetime | None = None
    sla_breached_at: datetime | None = None
    merged_into: str | None = None
    merged_from: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    orders: int = 0
    revenue: float = 0.0
    revenue_by_currency: dict[str, float] = Field(default_factory=dict)
    recent_orders: list[OrderRecord] = Field(default_factory=list)
    events_count: int = 0
    model_name: str
    model_version: str
    reasons: list[Reason] = Field(default_factory=list)
    contributions: list[Reason] = Field(default_factory=list)
    fit_reasons: list[Reason] = Field(default_factory=list)
    interest_at: datetime | None = None
    transitions: list[TransitionRecord] = Field(default_factory=list)
