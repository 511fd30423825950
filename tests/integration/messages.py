"""Message builders for the integration tests."""

from __future__ import annotations

import uuid


def ev(lead, type_="track", name=None, minute=0, **kw):
    m = {"messageId": uuid.uuid4().hex, "type": type_, "userId": lead,
         "timestamp": f"2026-11-20T10:{minute:02d}:00Z", **kw}
    if name:
        m["event"] = name
    return m
