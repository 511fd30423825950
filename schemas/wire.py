"""What every message on an input topic shares: the bytes → JSON object step, event-time
bounds, and the one error that sends a message to the DLQ with a reason."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import ValidationError

MAX_EVENT_BYTES = 32 * 1024

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)   # event times outside these are a broken
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)     # clock, and would overflow date arithmetic


class InvalidMessage(ValueError):
    """A message that cannot be accepted; ``code`` becomes the DLQ ``error`` header."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def decode_object(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """The JSON object in ``raw``, or :class:`InvalidMessage` (``empty``, ``too_large``,
    ``invalid_json``, ``not_an_object``)."""
    if raw is None:
        raise InvalidMessage("empty", "the message has no value")
    if len(raw) > max_bytes:
        raise InvalidMessage("too_large", f"{len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidMessage("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    return data


# field validators of the input models, here to be compiled with the core (``funnel.accel``):
# pydantic calls a compiled function without a Python frame (a classmethod validator cost one
# per field per message)

def id_text(value: Any) -> Any:
    """An id as text: a number (some trackers send numeric ids) becomes a string, ``""`` None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if value == "":
        return None
    return value


def empty_if_none(value: Any) -> Any:
    """``null`` for an object means an empty one."""
    return {} if value is None else value


def utc(value: datetime) -> datetime:
    """``value`` in UTC (naive means UTC), or ValueError when it is not a plausible event time."""
    t = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if not EARLIEST <= t < LATEST:
        raise ValueError(f"{t.isoformat()} is outside {EARLIEST.year}..{LATEST.year - 1}")
    return t


def describe(exc: ValidationError) -> str:
    """The first few errors of a validation, one line: ``field.path: message; …``."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
