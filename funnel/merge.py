"""Identity: one person known by several ids becomes one lead.

An anonymous id linked to a known lead (by ``identify`` or ``alias``) hands its history over;
the known lead replays the union of both histories, so that its scores are what they would be
had every message carried its id from the start.
"""

from __future__ import annotations

from datetime import datetime

from funnel.config import ScoringModel
from funnel.decide import new_lead, rescore
from funnel.history import HISTORY_KEPT, Item, compact, item_id, message_time, revive
from funnel.model import ALIASES_KEPT, SEEN_WINDOW, Lead
from funnel.moves import advance
from schemas.construct import copied
from schemas.lead import TransitionRecord


class LinkRefused(ValueError):
    """Two ids that must not become one lead (e.g. two known people on one browser)."""


def accept_link(other: Lead, into: str, email: str | None, via: str) -> tuple[Lead | None, list[Item]]:
    """``other`` is asked to merge into the lead ``into``. Returns ``other`` marked as merged
    and the history to hand over, or (None, []) when it already was merged there.
    Raises :class:`LinkRefused` when it belongs to somebody else.

    A merged id keeps one row whatever the order its messages and the link arrived in: a
    pointer (``merged_into``, its version) with a new lead's figures; its messages count in the
    lead it was merged into (before, its row showed its own figures when its events came first
    and zeros when the link did)."""
    if other.merged_into == into or other.lead_id == into:
        return None, []
    if other.merged_into is not None:
        raise LinkRefused(f"{other.lead_id} was already merged into {other.merged_into}")
    mine = other.traits.get("email")
    if via != "alias" and mine and email and str(mine).lower() != str(email).lower():
        raise LinkRefused(f"{other.lead_id} is a different known person ({mine})")
    marked = Lead(lead_id=other.lead_id, model_name=other.model_name,
                  model_version=other.model_version, merged_into=into,
                  version=other.version + 1)
    return marked, known_items(other)


assert SEEN_WINDOW >= HISTORY_KEPT, "known_items needs every kept message's id in seen_ids"


def known_items(lead: Lead) -> list[Item]:
    """The lead's history as far as its state knows it: only messages it has applied (their
    ids are in ``seen_ids``, which outlasts the history). A history read back after a crash
    may be ahead of the state — the worker writes it first — and a message ahead of the state
    is still to be decided: replayed now, it would be a duplicate when it comes."""
    seen = set(lead.seen_ids)
    return [i for i in lead.history.items if item_id(i) in seen]


SCORING_FIELDS = ("interest_raw", "interest_at", "temperature", "fit_score", "quality",
                  "fit_reasons", "traits", "first_touch", "first_seen_at", "last_activity_at",
                  "events_count", "signals", "rule_days", "rule_hits", "contributions", "history",
                  "orders", "revenue", "revenue_by_currency", "recent_orders")


def merge(lead: Lead, items: list[Item], from_id: str | None, at: datetime, model: ScoringModel
          ) -> tuple[Lead, list[TransitionRecord]]:
    """Merge the messages ``items`` (another id's history, or one message that reached it later)
    into ``lead``. Its scores become what they would be had every message carried this lead's id
    from the start: the union of both histories is replayed in event time (duplicates counted
    once, frequency limits respected). The stage and its history are the lead's own; the stage is
    then re-evaluated at ``at``."""
    seen = set(lead.seen_ids)
    new_items = [i for i in items if item_id(i) not in seen]
    if not new_items and (from_id is None or from_id in lead.merged_from):
        return lead, []   # nothing new: the same merge again changes nothing
    merged: Lead = copied(lead)
    if from_id and from_id not in merged.merged_from:
        merged.merged_from = [*merged.merged_from, from_id]
    if from_id and from_id not in merged.aliases:
        merged.aliases = [*merged.aliases[-(ALIASES_KEPT - 1):], from_id]
    transitions: list[TransitionRecord] = []
    if new_items:
        # the other id's messages come over the wire: validated, and kept as ``compact`` writes
        # them; the lead's own were, so they are rebuilt as they are (``revive(known=True)``)
        fresh = [(compact(m), m) for m in map(revive, new_items)]
        if not lead.history.cut:
            # replay the union from a new lead, in event time (stable: arrival order)
            start = new_lead(lead.lead_id, model)
            pairs = [*((i, revive(i, known=True)) for i in known_items(lead)), *fresh]
        else:
            # the lead's own history was cut: older messages cannot be replayed, so the other
            # id's messages are applied on top, in event time (frequency limits approximate)
            start, pairs = lead, fresh
        pairs.sort(key=lambda pair: message_time(pair[1]))
        replayed = rescore(start, [i for i, _ in pairs], model, [m for _, m in pairs])
        for name in SCORING_FIELDS:
            setattr(merged, name, getattr(replayed, name))
        if replayed.origin != "marketing" and merged.origin != "sales":
            merged.origin = replayed.origin
        merged.seen_ids = list(dict.fromkeys([*lead.seen_ids, *replayed.seen_ids]))[-SEEN_WINDOW:]
        merged.model_name, merged.model_version = model.name, model.version
    merged.version = max(merged.version, lead.version) + 1
    advance(merged, at, transitions, model)
    return merged, transitions
