"""Hypothesis strategies for hostile input, shared by the collector and topic fuzz tests."""

from __future__ import annotations

import json

from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=30)
FIELDS = st.sampled_from(["messageId", "type", "timestamp", "userId", "anonymousId", "event",
                          "properties", "traits", "context", "previousId", "sentAt"])


def dumps(value) -> bytes:
    return json.dumps(value).encode()   # big integers too, which orjson will not write


def mutated(base: dict, max_changes: int = 3):
    """``base`` with up to ``max_changes`` Segment fields replaced by arbitrary JSON."""
    return st.builds(lambda changes: {**base, **changes},
                     st.dictionaries(FIELDS, JSON, max_size=max_changes))
