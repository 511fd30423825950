"""An interaction event's values for the common message, checked and converted directly.

Pydantic's validation of an event (it copies the three objects, and converts the time) was a
seventh of the core's time. A message of the common shape — strings where the Segment Spec
wants them, a time in ISO 8601 to the microsecond, objects or nulls — has its values set here,
the values pydantic's validation gives (``tests/unit/test_event_values.py`` compares the two on
simulated and unusual messages); anything else, and every refusal, is left to pydantic, which
names what is wrong. Compiled with the core (``funnel.accel``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeVar

from schemas.construct import made
from schemas.wire import utc

T = TypeVar("T")
TYPES = frozenset({"page", "track", "identify", "alias", "screen", "group"})
IDS = ("userId", "anonymousId", "previousId")
TEXTS = ("event", "name")
OBJECTS = ("properties", "traits", "context")
FIELDS = frozenset({"messageId", "type", "timestamp", *IDS, *TEXTS, *OBJECTS})
MAX_TEXT = 256
# what ``datetime.fromisoformat`` and pydantic read alike (other forms: pydantic's to read)
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.ASCII)


def built(model: type[T], data: dict[str, Any]) -> T | None:
    """The ``InteractionEvent`` (``model``) that pydantic's validation of ``data`` gives, its
    values set as that validation sets them, or None: pydantic must decide."""
    checked = event_values(data)
    if checked is None:
        return None
    return made(model, checked[0], set(data), checked[1])  # type: ignore[no-any-return]


def event_values(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the event's field values in the model's order, the fields the Spec does not define) as
    ``InteractionEvent``'s validation would set them, or None: pydantic must decide."""
    message_id = data.get("messageId")
    kind = data.get("type")
    stamp = data.get("timestamp")
    if not (type(message_id) is str and 0 < len(message_id) <= MAX_TEXT and type(kind) is str
            and kind in TYPES and type(stamp) is str and ISO_TIME.fullmatch(stamp)):
        return None
    try:
        timestamp = utc(datetime.fromisoformat(stamp))
    except ValueError:
        return None
    values: dict[str, Any] = {"messageId": message_id, "type": kind, "timestamp": timestamp}
    for name in ("userId", "anonymousId", "event", "name", "previousId"):
        v = data.get(name)
        if v is None or (v == "" and name in IDS):
            values[name] = None
        elif type(v) is str and len(v) <= MAX_TEXT:
            values[name] = v
        else:
            return None
    for name in OBJECTS:
        v = data.get(name)
        if v is None:
            values[name] = {}
        elif type(v) is dict:
            values[name] = dict(v)   # the event's own, as pydantic's copy is
        else:
            return None
    if not (values["userId"] or values["anonymousId"]) \
            or (kind == "track" and not values["event"]) \
            or (kind == "alias" and not values["previousId"]):
        return None   # pydantic says which rule of the Spec it breaks
    extra = {k: v for k, v in data.items() if k not in FIELDS}
    return values, extra
