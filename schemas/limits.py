"""Limits on what one message may carry, checked at the edge (collector and topic alike).

A tracker bug or a hostile client must not make a lead's state, a changelog record or a row
grow without bound. Every refusal names the limit it broke (``InvalidMessage.code`` is
``limit_exceeded``; the detail says which limit, where, and its value).
"""

from __future__ import annotations

from typing import Any

MAX_STRING = 8192          # characters in one string value (a property, a trait, a URL)
MAX_KEY = 256              # characters in one object key
MAX_DEPTH = 6              # levels of nesting inside properties, traits and context
MAX_KEYS = 200             # keys in one object (properties, traits, context, or nested)
MAX_ITEMS = 200            # items in one array
MAX_UNKNOWN_FIELDS = 32    # top-level fields the Segment Spec does not define (kept as they are)

SPEC_FIELDS = frozenset({
    "messageId", "type", "timestamp", "userId", "anonymousId", "event", "name", "previousId",
    "properties", "traits", "context", "integrations", "originalTimestamp", "sentAt",
    "receivedAt", "channel", "version", "groupId", "category", "writeKey", "_metadata",
})

LIMITS = {"max_string": MAX_STRING, "max_key": MAX_KEY, "max_depth": MAX_DEPTH,
          "max_keys": MAX_KEYS, "max_items": MAX_ITEMS, "max_unknown_fields": MAX_UNKNOWN_FIELDS}


class LimitExceeded(ValueError):
    def __init__(self, limit: str, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail} (limit {limit}={LIMITS[limit]})")
        self.limit = limit


def check_limits(message: dict[str, Any]) -> None:
    """Raise :class:`LimitExceeded` naming the first limit ``message`` breaks."""
    unknown = [k for k in message if k not in SPEC_FIELDS]
    if len(unknown) > MAX_UNKNOWN_FIELDS:
        raise LimitExceeded("max_unknown_fields", "message",
                            f"{len(unknown)} fields outside the Segment Spec")
    for key, value in message.items():
        _walk(value, key, 0)


def _walk(value: Any, where: str, depth: int) -> None:
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise LimitExceeded("max_string", where, f"a string of {len(value)} characters")
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise LimitExceeded("max_depth", where, f"objects nested deeper than {MAX_DEPTH}")
        if len(value) > MAX_KEYS:
            raise LimitExceeded("max_keys", where, f"an object with {len(value)} keys")
        for k, v in value.items():
            if len(k) > MAX_KEY:
                raise LimitExceeded("max_key", where, f"a key of {len(k)} characters")
            _walk(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise LimitExceeded("max_depth", where, f"arrays nested deeper than {MAX_DEPTH}")
        if len(value) > MAX_ITEMS:
            raise LimitExceeded("max_items", where, f"an array of {len(value)} items")
        for i, v in enumerate(value):
            _walk(v, f"{where}[{i}]", depth + 1)
