"""The one entry point: ``process(lead, message, model) -> (lead, transitions)``.

Pure and deterministic: the same messages in the same order give the same leads, whatever the
machine's clock says. Replaying a topic through it offline gives the live pipeline's answer.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Union

import orjson

from funnel import scoring
from funnel.config import ScoringModel
from funnel.lifecycle import AUTOMATIC, Refused, lifecycle_for
from funnel.model import (ALIASES_KEPT, CONTRIBUTIONS_KEPT, HISTORY_BYTES, HISTORY_KEPT,
                          ORDERS_KEPT, SEEN_WINDOW, TRAITS_BYTES, TRANSITIONS_KEPT, Lead)
from schemas.commands import SalesCommand
from schemas.events import InteractionEvent
from schemas.lead import FirstTouch, OrderRecord, Reason, TransitionRecord

Message = Union[InteractionEvent, SalesCommand]

__all__ = ["CommandRefused", "LinkRefused", "Message", "accept_link", "cool", "cools_at", "merge",
           "new_lead", "next_due", "process", "tick"]


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
    _remember(lead, _compact(message))
    at = message.timestamp if isinstance(message, InteractionEvent) else message.occurred_at
    timed: list[TransitionRecord] = []
    _timers(lead, at, timed, model)   # deadlines that passed before this message, in event time
    if isinstance(message, InteractionEvent):
        lead, moves = _on_event(lead, message, model)
    else:
        lead, moves = _on_command(lead, message, model)
    return lead, timed + moves


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
        _order(lead, scoring._num(event.properties.get("revenue")),
               event.properties.get("currency"), at, event.messageId, "event")
    _classify(lead, model, fit_too=lead.traits is not traits_before or lead.version == 1
              or lead.orders != orders_before)

    transitions: list[TransitionRecord] = []
    if fired & set(model.lifecycle.customer_signals) and lead.stage != "customer":
        _move(lead, "purchase", at, transitions, model, fired, reason=event.event)
    _advance(lead, at, transitions, model, fired)
    return lead, transitions


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
    if dest == before:
        return True   # an internal move (an acknowledgement, a repeat order): no stage change
    lead.version += 1
    lead.stage = dest  # type: ignore[assignment]
    lead.stage_entered_at = at
    if dest == "mql" and lead.mql_at is None:
        lead.mql_at = at
    if dest == "sal" and lead.sal_at is None:
        lead.sal_at = at
    if dest == "sql":
        lead.sla_breached_at = None   # a new SQL: a new SLA
        if lead.sql_at is None:
            lead.sql_at = at
    if dest == "customer" and lead.customer_at is None:
        lead.customer_at = at
    if dest == "recycled":
        lead.recycled_at = at
    if dest == "disqualified":
        lead.disqualified_at = at
    record = TransitionRecord(lead_id=lead.lead_id, version=lead.version, from_stage=before,
                              to_stage=dest, trigger=trigger, occurred_at=at, actor=actor,
                              reason=reason, reasons=lead.top_reasons())
    lead.transitions = [*lead.transitions[-(TRANSITIONS_KEPT - 1):], record]
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


# --- timers: service levels in event time -------------------------------------------------

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


def _timers(lead: Lead, now: datetime, transitions: list[TransitionRecord],
            model: ScoringModel) -> bool:
    """Apply the deadlines that passed by ``now`` (event time). True when something changed."""
    changed = False
    due = sla_due_at(lead, model)
    if due is not None and due <= now:
        lead.sla_breached_at = due
        changed = True
    due = expires_at(lead, model)
    if due is not None and due <= now:
        days = model.lifecycle.sla.mql_days
        changed |= _move(lead, "expire", due, transitions, model, actor="policy",
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
    if deadlines and _timers(work, now, transitions, model):
        if not transitions:   # only a breach was recorded: still a new version
            work.version += 1
        lead = work
    if cooling and lead.merged_into is None:
        lead = cool(lead, now, model)
    return lead, transitions


# --- identity: merging the history of another id into a lead ---------------------------------

class LinkRefused(ValueError):
    """Two ids that must not become one lead (e.g. two known people on one browser)."""


def accept_link(other: Lead, into: str, email: str | None, via: str) -> tuple[Lead | None, list[dict]]:
    """``other`` is asked to merge into the lead ``into``. Returns ``other`` marked as merged
    and the history to hand over, or (None, []) when it already was merged there.
    Raises :class:`LinkRefused` when it belongs to somebody else."""
    if other.merged_into == into or other.lead_id == into:
        return None, []
    if other.merged_into is not None:
        raise LinkRefused(f"{other.lead_id} was already merged into {other.merged_into}")
    mine = other.traits.get("email")
    if via != "alias" and mine and email and str(mine).lower() != str(email).lower():
        raise LinkRefused(f"{other.lead_id} is a different known person ({mine})")
    marked = other.model_copy(update={"merged_into": into, "version": other.version + 1,
                                      "history": [], "history_bytes": 0})
    return marked, other.history


SCORING_FIELDS = ("interest_raw", "interest_at", "temperature", "fit_score", "quality",
                  "fit_reasons", "traits", "first_touch", "first_seen_at", "last_activity_at",
                  "events_count", "signals", "rule_days", "rule_hits", "contributions", "history",
                  "history_bytes", "history_cut", "orders", "revenue", "revenue_by_currency",
                  "recent_orders")


def merge(lead: Lead, items: list[dict], from_id: str | None, at: datetime, model: ScoringModel
          ) -> tuple[Lead, list[TransitionRecord]]:
    """Merge the messages ``items`` (another id's history, or one message that reached it later)
    into ``lead``. Its scores become what they would be had every message carried this lead's id
    from the start: the union of both histories is replayed in event time (duplicates counted
    once, frequency limits respected). The stage and its history are the lead's own; the stage is
    then re-evaluated at ``at``."""
    seen = set(lead.seen_ids)
    new_items = [i for i in items if _item_id(i) not in seen]
    merged = lead.model_copy()
    if from_id and from_id not in merged.merged_from:
        merged.merged_from = [*merged.merged_from, from_id]
    if from_id and from_id not in merged.aliases:
        merged.aliases = [*merged.aliases[-(ALIASES_KEPT - 1):], from_id]
    transitions: list[TransitionRecord] = []
    if new_items:
        if not lead.history_cut:
            # replay the union from a new lead, in event time (stable: arrival order)
            union = sorted([*lead.history, *new_items], key=_item_time)
            replayed = new_lead(lead.lead_id, model)
        else:
            # the lead's own history was cut: older messages cannot be replayed, so the other
            # id's messages are applied on top, in event time (frequency limits approximate)
            union = sorted(new_items, key=_item_time)
            replayed = lead
        for item in union:
            try:
                replayed, _ = process(replayed, _revive(item), model)
            except CommandRefused:
                pass
        for name in SCORING_FIELDS:
            setattr(merged, name, getattr(replayed, name))
        if replayed.origin != "marketing" and merged.origin != "sales":
            merged.origin = replayed.origin
        merged.seen_ids = list(dict.fromkeys([*lead.seen_ids, *replayed.seen_ids]))[-SEEN_WINDOW:]
        merged.model_name, merged.model_version = model.name, model.version
    merged.version = max(merged.version, lead.version) + 1
    _advance(merged, at, transitions, model, set())
    return merged, transitions


def _remember(lead: Lead, item: dict) -> None:
    """Append ``item`` to the lead's history, which keeps the last ``HISTORY_KEPT`` messages and
    at most ``HISTORY_BYTES`` of them: a lead with heavy messages keeps fewer."""
    history = [*lead.history, item]
    size = lead.history_bytes + len(orjson.dumps(item))
    drop = 0
    while drop < len(history) - 1 and (len(history) - drop > HISTORY_KEPT or size > HISTORY_BYTES):
        size -= len(orjson.dumps(history[drop]))
        drop += 1
    lead.history, lead.history_bytes = history[drop:], size
    lead.history_cut = lead.history_cut or drop > 0


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


def _compact(message: Message) -> dict:
    """What replaying a message needs, and no more."""
    if isinstance(message, InteractionEvent):
        m = message.model_dump(mode="json", exclude_none=True, include={
            "messageId", "type", "timestamp", "userId", "anonymousId", "event", "name",
            "previousId", "properties", "traits"})
        ctx = {k: message.context[k] for k in ("page", "campaign", "traits") if k in message.context}
        if ctx:
            m["context"] = ctx
        return {"k": "e", "m": m}
    return {"k": "c", "m": message.model_dump(mode="json", exclude_none=True)}


def _revive(item: dict) -> Message:
    if item["k"] == "e":
        return InteractionEvent.model_validate(item["m"])
    return SalesCommand.model_validate(item["m"])


def _item_id(item: dict) -> str:
    m = item.get("m") or {}
    return m.get("messageId") or m.get("command_id") or ""


def _item_time(item: dict) -> datetime:
    m = item["m"]
    return datetime.fromisoformat(str(m.get("timestamp") or m.get("occurred_at")).replace("Z", "+00:00"))
