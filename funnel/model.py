"""Lead state and its value objects. ``Lead`` is what the pipeline keeps per lead id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from funnel.history import History
from funnel.scoring import decayed_values, shown, top_reasons
from schemas.construct import copied

from schemas.lead import (
    FirstTouch,
    LeadSnapshot,
    OrderRecord,
    Origin,
    Quality,
    Reason,
    Stage,
    Temperature,
    TransitionRecord,
)

SEEN_WINDOW = 500          # message/command ids remembered per lead for deduplication
CONTRIBUTIONS_KEPT = 50    # interest contributions kept per lead for explanations
TRAITS_BYTES = 64 * 1024   # a lead's traits (JSON); over it, the keys set longest ago go first
ALIASES_KEPT = 50          # anonymous ids linked to one known lead
ORDERS_KEPT = 50           # purchases carried in the state and the snapshot (lead_orders keeps all)
TRANSITIONS_KEPT = 50      # stage changes carried in the state and the snapshot (the projection's
                           # lead_transitions table keeps them all)


class StageChanged(BaseModel):
    """A fact the pipeline publishes: a lead moved from one stage to another."""

    model_config = ConfigDict(frozen=True)

    transition: TransitionRecord
    snapshot: LeadSnapshot


class Lead(BaseModel):
    """The full state of one lead (the snapshot plus what scoring needs to go on)."""

    model_config = ConfigDict(validate_assignment=False, arbitrary_types_allowed=True)

    lead_id: str
    version: int = 0
    stage: Stage = "iql"
    origin: Origin = "marketing"
    created_by_sales: bool = False
    # interest: score anchored at ``interest_at``, decays from there in event time
    interest_raw: float = 0.0
    interest_at: datetime | None = None
    temperature: Temperature = "cold"
    fit_score: float = 0.0
    quality: Quality = "low"
    traits: dict[str, Any] = Field(default_factory=dict)
    first_touch: FirstTouch = Field(default_factory=FirstTouch)
    first_seen_at: datetime | None = None
    last_activity_at: datetime | None = None
    stage_entered_at: datetime | None = None
    mql_at: datetime | None = None
    sql_at: datetime | None = None
    customer_at: datetime | None = None
    sal_at: datetime | None = None
    disqualified_at: datetime | None = None
    orders: int = 0
    revenue: float = 0.0
    revenue_by_currency: dict[str, float] = Field(default_factory=dict)
    recent_orders: list[OrderRecord] = Field(default_factory=list)
    events_count: int = 0
    signals: dict[str, datetime] = Field(default_factory=dict)  # signal -> last seen (event time)
    recycled_at: datetime | None = None
    # Sales' last command on this lead (event time): stops the SQL SLA and the MQL expiry clocks
    last_sales_action_at: datetime | None = None
    sla_breached_at: datetime | None = None      # the current SQL's SLA, when it was breached
    # identity: anonymous ids linked to this lead, leads merged into it, where it was merged
    aliases: list[str] = Field(default_factory=list)
    merged_from: list[str] = Field(default_factory=list)
    merged_into: str | None = None
    # the messages an identity merge replays: kept apart from the lead's record (not in its
    # JSON; the worker stores it in a table of its own), see ``funnel.history``
    history: History = Field(default_factory=History, exclude=True)
    rule_days: dict[str, list[Any]] = Field(default_factory=dict)  # rule -> [day, count]
    rule_hits: dict[str, list[datetime]] = Field(default_factory=dict)  # windowed rules
    contributions: list[Reason] = Field(default_factory=list)
    fit_reasons: list[Reason] = Field(default_factory=list)
    transitions: list[TransitionRecord] = Field(default_factory=list)
    seen_ids: list[str] = Field(default_factory=list)
    model_name: str = ""
    model_version: str = ""

    # The core sets ~15 fields a message and copies the lead once: both without pydantic's
    # Python-level steps (validate_assignment is off, so its ``__setattr__`` only stores the
    # value and records the name in ``model_fields_set``, which nothing here reads; a lead's
    # fields set is what it was validated with)
    __setattr__ = object.__setattr__

    def __copy__(self) -> "Lead":   # (the core calls ``copied`` itself)
        return copied(self)   # type: ignore[no-any-return]

    @field_validator("history", mode="before")
    @classmethod
    def _history(cls, v: Any) -> Any:
        # a record written when the history was part of it: a list of items
        return History.of(v) if isinstance(v, list) else v

    def top_reasons(self) -> list[Reason]:
        return top_reasons(self.contributions, self.fit_reasons)

    def explain(self, half_life_days: float | None) -> list[Reason]:
        """The interest contributions, each with its value decayed to the score's time, plus one
        adjustment (older contributions no longer kept, the cap, the floor at zero) so that the
        decayed values add up to the interest score exactly."""
        decayed, rest = self.decayed(half_life_days)
        # new Reasons, not ``model_copy(update=…)``: half the time, once per contribution
        out = [Reason(rule=r.rule, points=r.points, at=r.at, kind=r.kind, detail=r.detail,
                      decayed=d) for r, d in zip(self.contributions, decayed)]
        if rest is not None:
            out.append(self.adjustment(rest))
        return out

    def decayed(self, half_life_days: float | None) -> tuple[list[float], float | None]:
        """Each contribution's decayed value, and the adjustment that makes them add up (None:
        they already do)."""
        return decayed_values(self.contributions, self.interest_raw, self.interest_at,
                              half_life_days)

    def adjustment(self, rest: float) -> Reason:
        """The explanation's last line: what the kept contributions do not account for."""
        return Reason(rule="(older, cap and floor)", points=rest, at=self.interest_at,
                      kind="adjustment", decayed=rest)

    def snapshot(self, half_life_days: float | None = None) -> LeadSnapshot:
        # built without validation: every value comes from this (validated) lead, with the
        # snapshot's own types; the snapshot is made once per changed lead per batch
        return LeadSnapshot.model_construct(
            lead_id=self.lead_id,
            version=self.version,
            stage=self.stage,
            interest_score=round(shown(self.interest_raw), 3),
            temperature=self.temperature,
            fit_score=round(self.fit_score, 3),
            quality=self.quality,
            origin=self.origin,
            email=text_or_none(self.traits.get("email")),
            company=text_or_none(self.traits.get("company")),
            traits=self.traits,
            first_touch=self.first_touch,
            first_seen_at=self.first_seen_at,
            last_activity_at=self.last_activity_at,
            stage_entered_at=self.stage_entered_at,
            mql_at=self.mql_at,
            sql_at=self.sql_at,
            customer_at=self.customer_at,
            sal_at=self.sal_at,
            recycled_at=self.recycled_at,
            disqualified_at=self.disqualified_at,
            last_sales_action_at=self.last_sales_action_at,
            sla_breached_at=self.sla_breached_at,
            merged_into=self.merged_into,
            merged_from=self.merged_from,
            aliases=self.aliases,
            orders=self.orders,
            revenue=round(self.revenue, 2),
            revenue_by_currency={k: round(v, 2) for k, v in self.revenue_by_currency.items()},
            recent_orders=self.recent_orders,
            events_count=self.events_count,
            model_name=self.model_name,
            model_version=self.model_version,
            reasons=self.top_reasons(),
            contributions=self.explain(half_life_days),
            fit_reasons=self.fit_reasons,
            interest_at=self.interest_at,
            transitions=self.transitions,
        )


def text_or_none(v: Any) -> str | None:
    return None if v is None else str(v)

