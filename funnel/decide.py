"""The one entry point: ``process(lead, message, model) -> (lead, transitions)``.

Pure and deterministic: the same messages in the same order give the same leads, whatever the
machine's clock says. Replaying a topic through it offline gives the live pipeline's answer.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Union

from funnel import scoring
from funnel.config import ScoringModel
from funnel.lifecycle import AUTOMATIC, Refused, lifecycle_for
from funnel.model import CONTRIBUTIONS_KEPT, SEEN_WINDOW, Lead
from schemas.commands import SalesCommand
from schemas.events import InteractionEvent
from schemas.lead import FirstTouch, Reason, TransitionRecord

Message = Union[InteractionEvent, SalesCommand]

__all__ = ["CommandRefused", "Message", "cool", "cools_at", "new_lead", "process"]


class CommandRefused(ValueError):
    """A sales command that the lead's stage does not allow; nothing was applied."""

    def __init__(self, command: SalesCommand, reason: str) -> None:
        super().__init__(reason)
        self.command = command
        self.reason = reason


def new_lead(lead_id: str, model: ScoringModel) -> Lead:
    return Lead(lead_id=lead_id, model_name=model.name, model_version=model.version)


def process(lead: Lead, message: Message, model: ScoringModel) -> tuple[Lead, list[TransitionRecord]]:
    """Apply one message to one lead. Returns the new lead (the input is not changed) and the
    stage changes it caused, in order. A duplicate message returns the lead unchanged."""
    msg_id = message.messageId if isinstance(message, InteractionEvent) else message.command_id
    if msg_id in lead.seen_ids:
        return lead, []
    lead = lead.model_copy()
    lead.seen_ids = [*lead.seen_ids[-(SEEN_WINDOW - 1):], msg_id]
    lead.version += 1
    lead.model_name, lead.model_version = model.name, model.version
    if isinstance(message, InteractionEvent):
        return _on_event(lead, message, model)
    return _on_command(lead, message, model)


def _touch(lead: Lead, at: datetime) -> None:
    if lead.first_seen_at is None or at < lead.first_seen_at:
        lead.first_seen_at = at
    if lead.last_activity_at is None or at > lead.last_activity_at:
        lead.last_activity_at = at


def _on_event(lead: Lead, event: InteractionEvent, model: ScoringModel
              ) -> tuple[Lead, list[TransitionRecord]]:
    at = event.timestamp
    _touch(lead, at)
    lead.events_count += 1
    traits_before = lead.traits
    if event.traits:
        lead.traits = {**lead.traits, **event.traits}
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict) and context_traits:
        lead.traits = {**lead.traits, **context_traits}
    campaign = event.campaign
    if campaign and lead.first_touch == FirstTouch():
        lead.first_touch = FirstTouch(source=_s(campaign.get("source")),
                                      medium=_s(campaign.get("medium")),
                                      campaign=_s(campaign.get("name")))
    medium = str(campaign.get("medium") or "").lower()
    if lead.traits.get("referred_by") or medium in {m.lower() for m in model.referral_mediums}:
        if lead.origin != "sales":
            lead.origin = "referral"

    fired: set[str] = set()
    day = at.date().isoformat()
    orders_before = lead.orders
    for rule in scoring.applicable_rules(model, event, lead.traits, lead.rule_days,
                                         lead.rule_hits):
        lead.interest_raw, lead.interest_at = scoring.add_points(
            model, lead.interest_raw, lead.interest_at, at, rule.points)
        lead.rule_days = scoring.count_rule(lead.rule_days, rule, day)
        lead.rule_hits = scoring.record_hit(lead.rule_hits, rule, at)
        lead.contributions = [*lead.contributions[-(CONTRIBUTIONS_KEPT - 1):],
                              Reason(rule=rule.id, points=rule.points, at=at)]
        fired.update(rule.signals)
    if fired:
        lead.signals = {**lead.signals, **{sig: max(at, lead.signals.get(sig, at)) for sig in fired}}
    if "purchase" in fired or (fired & set(model.lifecycle.customer_signals)):
        revenue = scoring._num(event.properties.get("revenue"))
        lead.orders += 1
        lead.revenue += revenue or 0.0
    _classify(lead, model, fit_too=lead.traits is not traits_before or lead.version == 1
              or lead.orders != orders_before)

    transitions: list[TransitionRecord] = []
    if fired & set(model.lifecycle.customer_signals) and lead.stage != "customer":
        _move(lead, "purchase", at, transitions, model, fired, reason=event.event)
    _advance(lead, at, transitions, model, fired)
    return lead, transitions


def _classify(lead: Lead, model: ScoringModel, fit_too: bool = True) -> None:
    previous = lead.temperature if lead.version > 1 else None
    lead.temperature = scoring.temperature(model, lead.interest_raw, previous)
    if fit_too:   # fit depends on traits and purchase history only
        history = {"orders": lead.orders, "revenue": lead.revenue}
        lead.fit_score, lead.fit_reasons = scoring.fit(model, {**lead.traits, **history})
        lead.quality = scoring.quality(model, lead.fit_score)


def _advance(lead: Lead, at: datetime, transitions: list[TransitionRecord], model: ScoringModel,
             signals: set[str]) -> None:
    """Take every automatic move whose guard holds, until none does."""
    lifecycle = lifecycle_for(model)
    for _ in range(len(AUTOMATIC) + 1):
        allowed = lifecycle.allowed(lead.stage)
        for trigger in AUTOMATIC:
            if trigger in allowed and _move(lead, trigger, at, transitions, model, signals):
                break
        else:
            return


def _move(lead: Lead, trigger: str, at: datetime, transitions: list[TransitionRecord],
          model: ScoringModel, signals: set[str] | None = None, *, actor: str | None = None,
          reason: str | None = None) -> bool:
    before = lead.stage
    dest = lifecycle_for(model).fire(lead, trigger, signals)
    if dest is None:
        return False
    lead.version += 1
    lead.stage = dest  # type: ignore[assignment]
    lead.stage_entered_at = at
    if dest == "mql" and lead.mql_at is None:
        lead.mql_at = at
    if dest == "sql" and lead.sql_at is None:
        lead.sql_at = at
    if dest == "customer" and lead.customer_at is None:
        lead.customer_at = at
    if dest == "recycled":
        lead.recycled_at = at
    record = TransitionRecord(lead_id=lead.lead_id, version=lead.version, from_stage=before,
                              to_stage=dest, trigger=trigger, occurred_at=at, actor=actor,
                              reason=reason, reasons=lead.top_reasons())
    lead.transitions = [*lead.transitions, record]
    transitions.append(record)
    return True


COMMAND_TRIGGERS = {"create": "create", "accept": "accept", "reject": "reject",
                    "disqualify": "disqualify", "won": "won", "lost": "lost", "reopen": "reopen"}


def _on_command(lead: Lead, command: SalesCommand, model: ScoringModel
                ) -> tuple[Lead, list[TransitionRecord]]:
    at = command.occurred_at
    trigger = COMMAND_TRIGGERS[command.action]
    transitions: list[TransitionRecord] = []
    if command.traits:
        lead.traits = {**lead.traits, **command.traits}
    if command.action == "create":
        lead.created_by_sales = True
        lead.origin = "sales"
    if command.action == "won":
        lead.orders += 1
        lead.revenue += command.amount or 0.0
    _touch(lead, at)
    _classify(lead, model)
    try:
        moved = _move(lead, trigger, at, transitions, model, actor=command.actor,
                      reason=command.reason)
    except Refused as exc:
        raise CommandRefused(command, str(exc)) from None
    if not moved:
        raise CommandRefused(command, f"'{command.action}' is not allowed from stage "
                                      f"'{lead.stage}' under the '{model.lifecycle.policy}' policy")
    if lead.stage == "sal":   # two_step: the second filter may already pass
        _advance(lead, at, transitions, model, set())
    return lead, transitions


def _s(v: object) -> str | None:
    return None if v is None else str(v)[:256]


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
