"""Hostile messages for ``funnel.events``, as an attacker or a broken tracker sends them.

Each kind is one function of a seeded ``Random``; ``hostile(n, seed)`` mixes them. Whether a
message is valid is never decided here: the worker's own parser decides, and the harness checks
that the worker did what that parser says (decided it, or dead-lettered it with a reason).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

BIG_STRING = 1_000_000   # characters: past the dead-letter size, under the broker's limit

Kind = Callable[[random.Random], tuple[str | None, bytes]]


def _event(r: random.Random, **over: object) -> dict:
    e: dict = {"messageId": f"h-{r.getrandbits(48):x}", "type": "track", "event": "Demo Requested",
               "userId": f"h-{r.randrange(50)}", "timestamp": "2026-10-05T10:00:00Z"}
    e.update(over)
    return e


def _key(r: random.Random, event: dict | None = None) -> str | None:
    user = (event or {}).get("userId")
    return r.choice([None, user if isinstance(user, str) else None, f"k-{r.randrange(9)}"])


def random_bytes(r: random.Random) -> tuple[str | None, bytes]:
    return _key(r), r.randbytes(r.randrange(0, 300))


def truncated(r: random.Random) -> tuple[str | None, bytes]:
    raw = json.dumps(_event(r)).encode()
    return _key(r), raw[:r.randrange(1, len(raw) - 1)]


def nested(r: random.Random) -> tuple[str | None, bytes]:
    depth = r.choice([100, 1_000, 50_000])
    inner = "[" * depth + "]" * depth if r.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
    e = json.dumps(_event(r, properties={"x": 0}))
    return _key(r), e.replace('{"x": 0}', inner).encode()


def wrong_types(r: random.Random) -> tuple[str | None, bytes]:
    field, value = r.choice([("messageId", 5), ("timestamp", True), ("properties", "x"),
                             ("traits", [1, 2]), ("type", None), ("userId", {"a": 1}),
                             ("event", 3.5), ("timestamp", "yesterday")])
    e = _event(r, **{field: value})
    return _key(r, e), json.dumps(e).encode()


def control_chars(r: random.Random) -> tuple[str | None, bytes]:
    bad = r.choice(["\u0000", "a\u0000b", "\u0007", "x\u001b[31m", "\ud800"])
    where = r.choice(["userId", "messageId", "traits", "properties", "event"])
    if where in ("traits", "properties"):
        e = _event(r, type="identify", **{where: {"company": bad}})
    else:
        e = _event(r, **{where: bad})
    return _key(r, e), json.dumps(e).encode()


def huge_numbers(r: random.Random) -> tuple[str | None, bytes]:
    value = r.choice(["1e308", "-1e308", "1e400", "-1e400", str(2**80), "1e12", "NaN",
                      "Infinity"])
    e = json.dumps(_event(r, event="Order Completed", properties={"revenue": 0}))
    return _key(r), e.replace('"revenue": 0', f'"revenue": {value}').encode()


def big_string(r: random.Random) -> tuple[str | None, bytes]:
    e = _event(r, type="identify", traits={"company": "x" * BIG_STRING})
    return _key(r, e), json.dumps(e).encode()


def far_timestamps(r: random.Random) -> tuple[str | None, bytes]:
    e = _event(r, timestamp=r.choice(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                      "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z"]))
    return _key(r, e), json.dumps(e).encode()


KINDS: list[Kind] = [random_bytes, truncated, nested, wrong_types, control_chars, huge_numbers,
                     far_timestamps]


def hostile(n: int, seed: int = 1) -> list[tuple[str | None, bytes]]:
    """``n`` hostile messages, every kind about as often, and one 1 MB string per 1,000 (at
    least one)."""
    r = random.Random(seed)
    out = [r.choice(KINDS)(r) for _ in range(n - max(1, n // 1000))]
    out += [big_string(r) for _ in range(max(1, n // 1000))]
    r.shuffle(out)
    return out
