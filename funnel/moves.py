"""Stage moves: fire one trigger of the lifecycle on a lead and record what it did."""

from __future__ import annotations

from datetime import datetime

from funnel.config import ScoringModel
from funnel.lifecycle import AUTOMATIC, Lifecycle, Refused, lifecycle_for
from funnel.model import TRANSITIONS_KEPT, Lead
from funnel.scoring import top_reasons
from schemas.lead import TransitionRecord

# the lead field that remembers the first (or, for recycled/disqualified, the last) entry
FIRST_ENTRY = {"mql": "mql_at", "sal": "sal_at", "sql": "sql_at", "customer": "customer_at"}
LAST_ENTRY = {"recycled": "recycled_at", "disqualified": "disqualified_at"}


def move(lead: Lead, trigger: str, at: datetime, transitions: list[TransitionRecord],
         model: ScoringModel, *, actor: str | None = None,
         reason: str | None = None) -> bool:
    """Fire ``trigger``; on a stage change, a new version and a ``TransitionRecord`` appended to
    ``transitions``. False when the trigger's guard does not hold. Raises
    ``funnel.lifecycle.Refused`` for a trigger the stage does not allow."""
    before = lead.stage
    dest = fire(lifecycle_for(model), lead, trigger, model)
    if dest is None:
        return False
    if dest == before:
        return True   # an internal move (an acknowledgement, a repeat order): no stage change
    lead.version += 1
    lead.stage = dest  # type: ignore[assignment]
    lead.stage_entered_at = at
    if dest in FIRST_ENTRY and getattr(lead, FIRST_ENTRY[dest]) is None:
        setattr(lead, FIRST_ENTRY[dest], at)
    if dest in LAST_ENTRY:
        setattr(lead, LAST_ENTRY[dest], at)
    if dest == "sql":
        lead.sla_breached_at = None   # a new SQL: a new SLA
    record = TransitionRecord(lead_id=lead.lead_id, version=lead.version, from_stage=before,
                              to_stage=dest, trigger=trigger, occurred_at=at, actor=actor,  # type: ignore[arg-type]
                              reason=reason,
                              reasons=top_reasons(lead.contributions, lead.fit_reasons))
    lead.transitions = [*lead.transitions[-(TRANSITIONS_KEPT - 1):], record]
    transitions.append(record)
    return True


def fire(lifecycle: Lifecycle, lead: Lead, trigger: str, model: ScoringModel) -> str | None:
    """Try ``trigger`` on ``lead``: the new stage, or None when a guard says no. Raises
    :class:`Refused` when the stage has no such move at all."""
    moves = lifecycle.moves.get((trigger, lead.stage))
    if moves is None:
        raise Refused(f"'{trigger}' is not allowed from stage '{lead.stage}'")
    for dest, guards in moves:
        for guard, target in guards:
            if bool(guard(lead, model)) != target:
                break
        else:
            return lead.stage if dest is None else dest
    return None


def advance(lead: Lead, at: datetime, transitions: list[TransitionRecord], model: ScoringModel
            ) -> None:
    """Take every automatic move whose guard holds, until none does."""
    automatic = lifecycle_for(model).automatic
    for _ in range(len(AUTOMATIC) + 1):
        for trigger in automatic[lead.stage]:
            if move(lead, trigger, at, transitions, model):
                break
        else:
            return
