"""Time in the core: cooling, SLA deadlines and MQL expiry, always at a given ``now``.

``now`` is an event time (inside ``process``) or the caller's clock (the worker's periodic
pass); nothing here reads a clock, so replays agree with the live pipeline.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from funnel import scoring
from funnel.config import ScoringModel
from funnel.model import Lead
from funnel.moves import move
from schemas.lead import TransitionRecord


def cool(lead: Lead, now: datetime, model: ScoringModel) -> Lead:
    """Leads cool while nothing happens: the interest score decayed to ``now`` (given by the
    caller, never read from a clock here) and the temperature it gives. Returns the same lead
    when nothing would change, else a new version."""
    if lead.interest_at is None or now <= lead.interest_at:
        return lead
    score = scoring.decayed(model, lead.interest_raw, lead.interest_at, now)
    temperature = scoring.temperature(model, score, lead.temperature)
    if temperature == lead.temperature:
        return lead
    return lead.model_copy(update={"interest_raw": score, "interest_at": now,
                                   "temperature": temperature, "version": lead.version + 1})


def cools_at(lead: Lead, model: ScoringModel) -> datetime | None:
    """When the lead's temperature will drop if nothing happens (None: it cannot drop)."""
    h = model.interest.half_life_days
    if lead.interest_at is None or not h or lead.temperature == "cold" or lead.interest_raw <= 0:
        return None
    bands, margin = model.interest.bands, model.interest.hysteresis
    floor = (bands.hot if lead.temperature == "hot" else bands.warm) - margin
    if lead.interest_raw < floor:
        return lead.interest_at
    seconds = h * scoring.SECONDS_PER_DAY * math.log2(lead.interest_raw / floor)
    return lead.interest_at + timedelta(seconds=seconds + 1)


def sla_due_at(lead: Lead, model: ScoringModel) -> datetime | None:
    """When the SQL's service level runs out (None: no SQL waiting on Sales)."""
    hours = model.lifecycle.sla.sql_hours
    if (hours is None or lead.stage != "sql" or lead.sla_breached_at is not None
            or lead.stage_entered_at is None or lead.merged_into is not None):
        return None
    if lead.last_sales_action_at is not None and lead.last_sales_action_at >= lead.stage_entered_at:
        return None   # Sales acted on it
    return lead.stage_entered_at + timedelta(hours=hours)


def expires_at(lead: Lead, model: ScoringModel) -> datetime | None:
    """When an MQL nobody works is recycled by policy (None: not an MQL, or no limit)."""
    days = model.lifecycle.sla.mql_days
    if days is None or lead.stage != "mql" or lead.stage_entered_at is None \
            or lead.merged_into is not None:
        return None
    start = max(lead.stage_entered_at, lead.last_sales_action_at or lead.stage_entered_at)
    return start + timedelta(days=days)


def apply_deadlines(lead: Lead, now: datetime, transitions: list[TransitionRecord],
                    model: ScoringModel) -> bool:
    """Apply, to ``lead`` in place, the deadlines that passed by ``now`` (SLA breaches, expired
    MQLs). True when something changed."""
    changed = False
    due = sla_due_at(lead, model)
    if due is not None and due <= now:
        lead.sla_breached_at = due
        changed = True
    due = expires_at(lead, model)
    if due is not None and due <= now:
        days = model.lifecycle.sla.mql_days
        changed |= move(lead, "expire", due, transitions, model, actor="policy",
                        reason=f"not worked within {days:g} days")
    return changed


def next_due(lead: Lead, model: ScoringModel, cooling: bool = True) -> datetime | None:
    """The next time ``tick`` would change the lead if nothing else happens."""
    times = [sla_due_at(lead, model), expires_at(lead, model)]
    if cooling and lead.merged_into is None:
        times.append(cools_at(lead, model))
    due = [t for t in times if t is not None]
    return min(due) if due else None


def tick(lead: Lead, now: datetime, model: ScoringModel, cooling: bool = True,
         deadlines: bool = True) -> tuple[Lead, list[TransitionRecord]]:
    """The periodic check: with ``deadlines``, those passed by ``now`` (SLA breaches, expired
    MQLs); with ``cooling``, the temperature decayed to ``now``. Returns the same lead when
    nothing changes."""
    work = lead.model_copy()
    transitions: list[TransitionRecord] = []
    if deadlines and apply_deadlines(work, now, transitions, model):
        if not transitions:   # only a breach was recorded: still a new version
            work.version += 1
        lead = work
    if cooling and lead.merged_into is None:
        lead = cool(lead, now, model)
    return lead, transitions
