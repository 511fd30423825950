"""A lead's message history: what an identity merge replays, and nothing else needs.

Each item is ``{"k": "e"|"c", "m": message}`` (an interaction event or a sales command, compacted
to what replaying it needs). Its wire shape is ``schemas.identity.HistoryItem``.

The history is appended on every message and read only on a merge, so a ``History`` keeps its
items as JSON lines, appended without decoding the ones before, and is stored apart from the
lead's hot record (the worker keeps it in its own table; ``Lead`` excludes it from its JSON).
It keeps the last ``HISTORY_KEPT`` messages and at most ``HISTORY_BYTES`` of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Union

import orjson

from schemas.commands import SalesCommand
from schemas.construct import made
from schemas.events import InteractionEvent

if TYPE_CHECKING:
    from funnel.model import Lead

HISTORY_KEPT = 300         # messages kept per lead so that an identity merge can replay them
HISTORY_BYTES = 256 * 1024  # ... and at most this many bytes of them (JSON), so that one lead's
                            # history stays well under a broker's 1 MB record limit
ENCODING_V1 = b"\x01"

Message = Union[InteractionEvent, SalesCommand]


def message_time(m: Message) -> datetime:
    """A message's event time: an event's ``timestamp``, a command's ``occurred_at``."""
    return m.timestamp if isinstance(m, InteractionEvent) else m.occurred_at
Item = dict[str, Any]

EVENT_FIELDS = {"messageId", "type", "timestamp", "userId", "anonymousId", "event", "name",
                "previousId", "properties", "traits"}
CONTEXT_FIELDS = ("page", "campaign", "traits")
EVENT_ORDER = tuple(f for f in InteractionEvent.model_fields if f in EVENT_FIELDS)


def compact(message: Message) -> Item:
    """What replaying a message needs, and no more. An event's fields as its ``model_dump(
    mode="json", exclude_none=True, include=EVENT_FIELDS)`` gives them, built directly (its
    values came from JSON; its timestamp is UTC): pydantic's dump was 6% of the core's time."""
    if isinstance(message, InteractionEvent):
        fields = message.__dict__
        m = {k: fields[k] for k in EVENT_ORDER if fields[k] is not None}
        stamp = message.timestamp.isoformat()
        m["timestamp"] = stamp[:-6] + "Z" if stamp.endswith("+00:00") else stamp
        ctx = {k: message.context[k] for k in CONTEXT_FIELDS if k in message.context}
        if ctx:
            m["context"] = ctx
        return {"k": "e", "m": m}
    return {"k": "c", "m": message.model_dump(mode="json", exclude_none=True)}


def revive(item: Item, known: bool = False) -> Message:
    """The message an item was made from. ``known``: an event of a lead's own history, which
    ``compact`` wrote from a validated event: built again without validating it (validating
    was a quarter of a merge's replay). Items from elsewhere (an identity message) are
    validated."""
    if item["k"] == "e":
        m = item["m"]
        return _known_event(m) if known else InteractionEvent.model_validate(m)
    return SalesCommand.model_validate(item["m"])


# every field, in the model's order (its JSON dump follows the order of the instance's values)
EVENT_NONE = dict.fromkeys(InteractionEvent.model_fields)


def _known_event(m: dict[str, Any]) -> InteractionEvent:
    """The event ``compact`` wrote ``m`` from, with the values its validation gave (ids as
    strings, the time in UTC, empty objects for what it did not carry), set as pydantic's own
    ``__init__`` sets them — its ``model_construct`` was slower than validating."""
    values = {**EVENT_NONE, "properties": {}, "traits": {}, "context": {}, **m,
              "timestamp": datetime.fromisoformat(m["timestamp"]).astimezone(timezone.utc)}
    return made(InteractionEvent, values, set(m), {})  # type: ignore[no-any-return]


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


def remember(lead: "Lead", item: Item) -> None:
    """Append ``item`` to the lead's history (bounded: see :class:`History`)."""
    lead.history = lead.history.add(item)


@dataclass
class History:
    """Items as JSON lines (``blob``); ``cut``: older items were dropped. Treated as immutable
    (``add`` returns a new one) but for ``stored``: as read from (or written to) a store, not
    changed since, which the store sets."""

    blob: bytes = b""
    cut: bool = False
    stored: bool = field(default=False, compare=False)
    lines: int = field(default=-1, compare=False, repr=False)   # the count, once known

    @classmethod
    def of(cls, items: list[Item], cut: bool = False) -> "History":
        return cls(cut=cut).extend(items)

    def __len__(self) -> int:
        if self.lines < 0:   # counted once, not at every add (a blob holds up to 256 KB)
            self.lines = self.blob.count(b"\n") + 1 if self.blob else 0
        return self.lines

    @property
    def items(self) -> list[Item]:
        return [orjson.loads(line) for line in self.blob.split(b"\n")] if self.blob else []

    def last(self) -> Item | None:
        return orjson.loads(self.blob[self.blob.rfind(b"\n") + 1:]) if self.blob else None

    def add(self, item: Item) -> "History":
        line = orjson.dumps(item)
        blob = self.blob + b"\n" + line if self.blob else line
        count, cut = len(self) + 1, self.cut
        while (count > HISTORY_KEPT or len(blob) > HISTORY_BYTES) and count > 1:
            blob = blob[blob.index(b"\n") + 1:]
            count, cut = count - 1, True
        return History(blob, cut, lines=count)

    def extend(self, items: list[Item]) -> "History":
        """``add`` of each item in turn, in one pass: the longest run of the last lines that
        keeps both bounds (at least the last line), not a copy of the blob per item."""
        if not items:
            return self
        lines = [orjson.dumps(item) for item in items]
        if self.blob:
            lines = [*self.blob.split(b"\n"), *lines]
        keep = size = 0
        for line in reversed(lines):
            grown = size + len(line) + (1 if keep else 0)
            if keep and (keep >= HISTORY_KEPT or grown > HISTORY_BYTES):
                break
            keep, size = keep + 1, grown
        return History(b"\n".join(lines[-keep:]), self.cut or keep < len(lines), lines=keep)

    def encode(self) -> bytes:
        return ENCODING_V1 + (b"1" if self.cut else b"0") + self.blob

    @classmethod
    def decode(cls, raw: bytes | None) -> "History":
        if not raw:
            return cls(stored=True)
        return cls(raw[2:], raw[1:2] == b"1", stored=True)
