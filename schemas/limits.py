"""Limits on what one message may carry, checked at the edge (collector and topic alike).

A tracker bug or a hostile client must not make a lead's state, a changelog record or a row
grow without bound. Every refusal names the limit it broke (``InvalidMessage.code`` is
``limit_exceeded``; the detail says which limit, where, and its value).
"""

from __future__ import annotations

import math
from typing import Any

MAX_STRING = 8192          # characters in one string value (a property, a trait, a URL)
MAX_KEY = 256              # characters in one object key
MAX_DEPTH = 6              # levels of nesting inside properties, traits and context
MAX_KEYS = 200             # keys in one object (properties, traits, context, or nested)
MAX_ITEMS = 200            # items in one array
MAX_UNKNOWN_FIELDS = 32    # top-level fields the Segment Spec does not define (kept as they are)
MAX_NUMBER = 1e15          # magnitude of any number (past it, sums and columns overflow)
MAX_AMOUNT = 1e9           # one order's revenue or amount (the columns are numeric(14, 2))

SPEC_FIELDS = frozenset({
    "messageId", "type", "timestamp", "userId", "anonymousId", "event", "name", "previousId",
    "properties", "traits", "context", "integrations", "originalTimestamp", "sentAt",
    "receivedAt", "channel", "version", "groupId", "category", "writeKey", "_metadata",
})

# ints stay ints in the messages (compiled with mypyc, a table typed float made them 6.0)
LIMITS: dict[str, int | float] = {
    "max_string": MAX_STRING, "max_key": MAX_KEY, "max_depth": MAX_DEPTH,
    "max_keys": MAX_KEYS, "max_items": MAX_ITEMS, "max_unknown_fields": MAX_UNKNOWN_FIELDS,
    "max_number": MAX_NUMBER, "max_amount": MAX_AMOUNT,
    # PostgreSQL text and jsonb cannot hold U+0000: a lead carrying one could never be
    # projected (its snapshot would be refused on every retry)
    "no_nul": 0}


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
    check_values(message)


def check_values(message: dict[str, Any]) -> None:
    """The limits on values alone (strings, numbers, nesting), for any message."""
    if within(message):
        return
    for key, value in message.items():   # which limit, and where
        _text(key, "message")
        _walk(value, key, 0)


def within(message: dict[str, Any]) -> bool:
    """Whether ``message`` keeps every limit on values: one pass without paths or messages
    (``check_values`` walks it again to name the limit only when this says no). False also for
    a value of a type JSON does not give."""
    for key in message:
        if "\x00" in key:
            return False
    return _values_within(message.values(), -1)


def _within(value: dict | list, depth: int) -> bool:
    if depth >= MAX_DEPTH:
        return False
    if type(value) is dict:
        if len(value) > MAX_KEYS:
            return False
        for k in value:
            if len(k) > MAX_KEY or "\x00" in k:
                return False
        return _values_within(value.values(), depth)
    return len(value) <= MAX_ITEMS and _values_within(value, depth)


def _values_within(values: Any, depth: int) -> bool:
    """``values`` are the items of an object or array at ``depth``."""
    for v in values:
        t = type(v)
        if t is str:
            if len(v) > MAX_STRING or "\x00" in v:
                return False
        elif t is float or t is int:
            if not -MAX_NUMBER <= v <= MAX_NUMBER:   # NaN and infinities fail it too
                return False
        elif t is dict or t is list:
            if not _within(v, depth + 1):
                return False
        elif v is not None and t is not bool:
            return False
    return True


def check_amount(value: Any, where: str) -> None:
    """A money amount (a number, or a string holding one) within ``MAX_AMOUNT``."""
    try:
        n = float(value) if isinstance(value, (int, float, str)) and value != "" else None
    except ValueError:
        return   # not a number: not an amount (the model ignores it)
    if n is not None and not (math.isfinite(n) and abs(n) <= MAX_AMOUNT):
        raise LimitExceeded("max_amount", where, f"an amount of {value!r}")


def _text(value: str, where: str) -> None:
    if "\x00" in value:
        raise LimitExceeded("no_nul", where, "a NUL character (U+0000)")


def _walk(value: Any, where: str, depth: int) -> None:
    problem = _leaf(value)
    if problem is not None:
        raise LimitExceeded(problem[0], where, problem[1])
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise LimitExceeded("max_depth", where, f"objects nested deeper than {MAX_DEPTH}")
        if len(value) > MAX_KEYS:
            raise LimitExceeded("max_keys", where, f"an object with {len(value)} keys")
        for k, v in value.items():
            if len(k) > MAX_KEY:
                raise LimitExceeded("max_key", where, f"a key of {len(k)} characters")
            _text(k, where)
            _item(v, where, k, depth)
    elif isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise LimitExceeded("max_depth", where, f"arrays nested deeper than {MAX_DEPTH}")
        if len(value) > MAX_ITEMS:
            raise LimitExceeded("max_items", where, f"an array of {len(value)} items")
        for i, v in enumerate(value):
            _item(v, where, i, depth)


def _item(value: Any, parent: str, name: str | int, depth: int) -> None:
    """An object's or array's item; its path (``parent.name`` / ``parent[name]``) is built
    only when it is needed: the item breaks a limit, or holds items of its own. The leaf tests
    are written out here (by exact type: JSON gives no subclasses, and ``bool`` is no number
    here) because this runs for every value of every message."""
    t = type(value)
    if t is str:
        if len(value) <= MAX_STRING and "\x00" not in value:
            return
    elif t is float or t is int:
        if math.isfinite(value) and -MAX_NUMBER <= value <= MAX_NUMBER:
            return
    elif t is not dict and t is not list:
        return
    _walk(value, f"{parent}.{name}" if isinstance(name, str) else f"{parent}[{name}]",
          depth + 1)


def _leaf(value: Any) -> tuple[str, str] | None:
    """The limit a string or a number breaks, and how (None: within them, or not a leaf)."""
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return "max_string", f"a string of {len(value)} characters"
        if "\x00" in value:
            return "no_nul", "a NUL character (U+0000)"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            return "max_number", f"the number {value!r}"
    return None
