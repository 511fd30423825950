"""The one entry point: ``process(lead, message, model) -> (lead, transitions)``.

Pure and deterministic: the same messages in the same order give the same leads, whatever the
machine's clock says. Replaying a topic through it offline gives the live pipeline's answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import orjson

from funnel import scoring
from funnel.config import ScoringModel, per_model
from funnel.history import History, Item, Message, compact, message_time, remember, revive
from funnel.lifecycle import Refused
from funnel.model import (ALIASES_KEPT, CONTRIBUTIONS_KEPT, ORDERS_KEPT, SEEN_WINDOW,
                          TRAITS_BYTES, Lead)
from funnel.moves import advance, move
from funnel.timers import apply_deadlines
from schemas.commands import SalesCommand
from schemas.construct import copied, made
from schemas.events import InteractionEvent
from schemas.lead import FirstTouch, OrderRecord, Reason, TransitionRecord

__all__ = ["CommandRefused", "Message", "new_lead", "process", "rescore"]


class CommandRefused(ValueError):
    """A sales command that the lead's stage does not allow; nothing was applied."""

    def __init__(self, command: SalesCommand, reason: str) -> None:
        super().__init__(reason)
        self.command = command
        self.reason = reason


_BLANK: dict[int, tuple[ScoringModel, Lead]] = {}


def new_lead(lead_id: str, model: ScoringModel) -> Lead:
    """A lead nothing happened to yet: a copy of one blank lead per model (validating a new
    ``Lead`` and its ~40 defaults was 8% of the core's time). Its containers are shared, as a
    lead's are with its previous version: the core never changes one in place."""
    lead = per_model(_BLANK, model, lambda m: Lead(
        lead_id="", model_name=m.name, model_version=m.version)).__copy__()
    lead.lead_id = lead_id
    lead.history = History()
    return lead


def process(lead: Lead, message: Message, model: ScoringModel) -> tuple[Lead, list[TransitionRecord]]:
    """Apply one message to one lead. Returns the new lead (the input is not changed) and the
    stage changes it caused, in order. A duplicate message returns the lead unchanged."""
    msg_id = message.messageId if isinstance(message, InteractionEvent) else message.command_id
    if msg_id in lead.seen_ids:
        return lead, []
    lead = copied(lead)   # ``model_copy()``, without its Python steps
    lead.seen_ids = [*lead.seen_ids[-(SEEN_WINDOW - 1):], msg_id]
    remember(lead, compact(message))
    return lead, _apply(lead, message, model)


def rescore(start: Lead, items: list[Item], model: ScoringModel,
            messages: list[Message] | None = None) -> Lead:
    """``start`` with ``items`` (history items) applied in order, for what an identity merge
    takes of the result: its scores and their inputs, ``origin``, ``seen_ids`` and history —
    the values ``process`` item after item gives (duplicates skipped alike). When no sales
    command is among the items (most merges) it is cheaper: one copy of the lead, not one a
    message; the history written once; no stage moves, which an event's scores do not depend on
    (a command's acceptance does, so a command among them takes ``process`` all the way).
    ``messages``: the items revived, when the caller has them — the items are then kept as they
    are, so each must be as ``compact`` writes it (``merge``); else both are made here."""
    if messages is None:
        messages = [revive(item) for item in items]
        items = [compact(message) for message in messages]
    if not all(isinstance(m, InteractionEvent) for m in messages):
        lead = start
        for message in messages:
            try:
                lead, _ = process(lead, message, model)
            except CommandRefused:
                pass
        return lead
    events = cast(list[InteractionEvent], messages)
    lead = copied(start)
    seen = list(lead.seen_ids)
    last = {msg_id: i for i, msg_id in enumerate(seen)}   # where each id was seen last
    kept: list[Item] = []
    for item, event in zip(items, events):
        at = last.get(event.messageId)
        if at is not None and at >= len(seen) - SEEN_WINDOW:
            continue   # a duplicate: within the last SEEN_WINDOW ids, as in ``process``
        last[event.messageId] = len(seen)
        seen.append(event.messageId)
        kept.append(item)   # as compacted where it was remembered: not compacted again
        _apply(lead, event, model, stages=False)
    lead.seen_ids = seen[-SEEN_WINDOW:]
    lead.history = lead.history.extend(kept)
    return lead


def _apply(lead: Lead, message: Message, model: ScoringModel, stages: bool = True
           ) -> list[TransitionRecord]:
    """``message`` applied to ``lead`` in place (a copy of the caller's); ``stages``: the stage
    moves too (deadlines passed, purchases, the automatic moves)."""
    lead.version += 1
    lead.model_name, lead.model_version = model.name, model.version
    at = message_time(message)
    timed: list[TransitionRecord] = []
    if stages:   # deadlines that passed before this message, in event time
        apply_deadlines(lead, at, timed, model)
    if isinstance(message, InteractionEvent):
        moves = _on_event(lead, message, model, stages)
    else:
        moves = _on_command(lead, message, model)
    return timed + moves if timed else moves


REASON_FIELDS_SET = frozenset({"rule", "points", "at"})


def _reason(rule: str, points: float, at: datetime) -> Reason:
    """``Reason(rule=rule, points=points, at=at)`` from a validated rule and an event's time,
    set as pydantic's ``__init__`` sets them without validating them again (the validation was
    ~4% of the core's time, once per rule that scored)."""
    return made(Reason, {"rule": rule, "points": points, "at": at, "kind": "interest",  # type: ignore[no-any-return]
                         "detail": None, "decayed": None}, set(REASON_FIELDS_SET))


def _touch(lead: Lead, at: datetime) -> None:
    if lead.first_seen_at is None or at < lead.first_seen_at:
        lead.first_seen_at = at
    if lead.last_activity_at is None or at > lead.last_activity_at:
        lead.last_activity_at = at


NO_TOUCH = FirstTouch()


def _on_event(lead: Lead, event: InteractionEvent, model: ScoringModel, stages: bool = True
              ) -> list[TransitionRecord]:
    at = event.timestamp
    _touch(lead, at)
    lead.events_count += 1
    if event.userId and event.userId == lead.lead_id:
        # ids this person was known by before: their history joins this lead (see ``merge``)
        for other in (event.anonymousId, event.previousId if event.type == "alias" else None):
            if other and other != lead.lead_id and other not in lead.aliases:
                lead.aliases = [*lead.aliases[-(ALIASES_KEPT - 1):], other]
    traits_before = lead.traits
    if event.traits:
        lead.traits = _merge_traits(lead.traits, event.traits)
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict) and context_traits:
        lead.traits = _merge_traits(lead.traits, context_traits)
    campaign = event.campaign
    if campaign and lead.first_touch == NO_TOUCH:
        lead.first_touch = FirstTouch(source=_s(campaign.get("source")),
                                      medium=_s(campaign.get("medium")),
                                      campaign=_s(campaign.get("name")))
    medium = str(campaign.get("medium") or "").lower()
    if lead.traits.get("referred_by") or medium in model.referral_set:
        if lead.origin != "sales":
            lead.origin = "referral"

    fired: set[str] = set()
    day = at.date().isoformat()
    orders_before = lead.orders
    for rule in scoring.applicable_rules(model, event, lead.traits, lead.rule_days,
                                         lead.rule_hits, day):
        lead.interest_raw, lead.interest_at = scoring.add_points(
            model, lead.interest_raw, lead.interest_at, at, rule.points)
        lead.rule_days = scoring.count_rule(lead.rule_days, rule, day)
        lead.rule_hits = scoring.record_hit(lead.rule_hits, rule, at)
        lead.contributions = [*lead.contributions[-(CONTRIBUTIONS_KEPT - 1):],
                              _reason(rule.id, rule.points, at)]
        fired.update(rule.signals)
    if fired:
        lead.signals = {**lead.signals, **{sig: max(at, lead.signals.get(sig, at)) for sig in fired}}
    if "purchase" in fired or (fired & model.lifecycle.customer_set):
        _order(lead, scoring.number(event.properties.get("revenue")),
               event.properties.get("currency"), at, event.messageId, "event")
    _classify(lead, model, fit_too=lead.traits is not traits_before or lead.version == 1
              or lead.orders != orders_before)

    transitions: list[TransitionRecord] = []
    if not stages:
        return transitions
    if fired & model.lifecycle.customer_set and lead.stage != "customer":
        move(lead, "purchase", at, transitions, model, reason=event.event)
    advance(lead, at, transitions, model)
    return transitions


DEFAULT_CURRENCY = "USD"


def _order(lead: Lead, amount: float | None, currency: object, at: datetime, order_id: str,
           source: str) -> None:
    """A purchase: one more order, its amount added to the revenue (per currency too), and
    remembered with its time (the last ``ORDERS_KEPT``) for revenue by period."""
    code = str(currency).strip().upper()[:8] if currency else DEFAULT_CURRENCY
    lead.recent_orders = [*lead.recent_orders[-(ORDERS_KEPT - 1):], OrderRecord(
        order_id=order_id, occurred_at=at, amount=amount or 0.0, currency=code,
        source=source)]  # type: ignore[arg-type]
    lead.orders += 1
    lead.revenue += amount or 0.0
    lead.revenue_by_currency = {**lead.revenue_by_currency,
                                code: lead.revenue_by_currency.get(code, 0.0) + (amount or 0.0)}


def _classify(lead: Lead, model: ScoringModel, fit_too: bool = True) -> None:
    previous = lead.temperature if lead.version > 1 else None
    lead.temperature = scoring.temperature(model, lead.interest_raw, previous)
    if fit_too:   # fit depends on traits and purchase history only
        history = {"orders": lead.orders, "revenue": lead.revenue}
        lead.fit_score, lead.fit_reasons = scoring.fit(model, {**lead.traits, **history})
        lead.quality = scoring.quality(model, lead.fit_score)


COMMAND_TRIGGERS = {"create": "create", "accept": "accept", "reject": "reject",
                    "disqualify": "disqualify", "won": "won", "lost": "lost", "reopen": "reopen"}


def _on_command(lead: Lead, command: SalesCommand, model: ScoringModel
                ) -> list[TransitionRecord]:
    at = command.occurred_at
    trigger = COMMAND_TRIGGERS[command.action]
    transitions: list[TransitionRecord] = []
    if command.traits:
        lead.traits = _merge_traits(lead.traits, command.traits)
    if command.action == "create":
        lead.created_by_sales = True
        lead.origin = "sales"
    if command.action == "won":
        _order(lead, command.amount, command.currency, at, command.command_id, "sales")
    if lead.last_sales_action_at is None or at > lead.last_sales_action_at:
        lead.last_sales_action_at = at
    _touch(lead, at)
    _classify(lead, model)
    try:
        moved = move(lead, trigger, at, transitions, model, actor=command.actor,
                      reason=command.reason)
    except Refused as exc:
        raise CommandRefused(command, str(exc)) from None
    if not moved:
        raise CommandRefused(command, f"'{command.action}' is not allowed from stage "
                                      f"'{lead.stage}' under the '{model.lifecycle.policy}' policy")
    if lead.stage == "sal":   # two_step: the second filter may already pass
        advance(lead, at, transitions, model)
    return transitions


def _s(v: object) -> str | None:
    return None if v is None else str(v)[:256]


def _merge_traits(old: dict, new: dict) -> dict:
    """``old`` updated with ``new``; over ``TRAITS_BYTES`` the keys set longest ago go first."""
    merged = {**old, **new}
    if len(orjson.dumps(merged)) <= TRAITS_BYTES:
        return merged
    kept = {k: v for k, v in old.items() if k not in new}
    for k in list(kept):
        if len(orjson.dumps({**kept, **new})) <= TRAITS_BYTES:
            break
        del kept[k]
    return {**kept, **new}
