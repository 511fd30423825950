"""A lead's message history: what an identity merge replays.

Each item is ``{"k": "e"|"c", "m": message}`` (an interaction event or a sales command, compacted
to what replaying it needs). Its wire shape is ``schemas.identity.HistoryItem``; here items stay
plain dicts, because the history is written on every message and read only on a merge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Union

import orjson

from funnel.model import HISTORY_BYTES, HISTORY_KEPT, Lead
from schemas.commands import SalesCommand
from schemas.events import InteractionEvent

Message = Union[InteractionEvent, SalesCommand]


def message_time(m: Message) -> datetime:
    """A message's event time: an event's ``timestamp``, a command's ``occurred_at``."""
    return m.timestamp if isinstance(m, InteractionEvent) else m.occurred_at
Item = dict[str, Any]

EVENT_FIELDS = {"messageId", "type", "timestamp", "userId", "anonymousId", "event", "name",
                "previousId", "properties", "traits"}
CONTEXT_FIELDS = ("page", "campaign", "traits")


def compact(message: Message) -> Item:
    """What replaying a message needs, and no more."""
    if isinstance(message, InteractionEvent):
        m = message.model_dump(mode="json", exclude_none=True, include=EVENT_FIELDS)
        ctx = {k: message.context[k] for k in CONTEXT_FIELDS if k in message.context}
        if ctx:
            m["context"] = ctx
        return {"k": "e", "m": m}
    return {"k": "c", "m": message.model_dump(mode="json", exclude_none=True)}


def revive(item: Item) -> Message:
    """The message an item was made from."""
    if item["k"] == "e":
        return InteractionEvent.model_validate(item["m"])
    return SalesCommand.model_validate(item["m"])


def is_command(item: Item) -> bool:
    return item.get("k") == "c"


def item_id(item: Item) -> str:
    """The item's idempotency key: ``messageId`` or ``command_id``."""
    m = item.get("m") or {}
    return m.get("messageId") or m.get("command_id") or ""


def item_time(item: Item) -> datetime:
    """The item's event time: ``timestamp`` or ``occurred_at``."""
    m = item["m"]
    return datetime.fromisoformat(str(m.get("timestamp") or m.get("occurred_at")).replace("Z", "+00:00"))


def last_type(lead: Lead) -> str | None:
    """The Segment ``type`` of the lead's last message (None for a command or no history)."""
    return lead.history[-1]["m"].get("type") if lead.history else None


def remember(lead: Lead, item: Item) -> None:
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
