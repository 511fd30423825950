"""Message builders for the unit tests (plain functions, no fixtures)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from funnel.history import Message, message_time
from schemas.commands import SalesCommand, parse_command
from schemas.events import InteractionEvent, parse_event
from streams.simulate import generate

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
_ids = itertools.count(1)

GOOD_TRAITS = {"email": "cto@acme.io", "company": "Acme", "industry": "saas", "employees": 200,
               "budget": 50000, "country": "US", "job_title": "CTO"}


def at(minutes: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, days=days)


def event(type_: str = "track", name: str | None = None, *, lead: str = "u-1",
          when: datetime | None = None, mid: str | None = None, **kw: Any) -> InteractionEvent:
    data: dict[str, Any] = {"messageId": mid or f"m-{next(_ids)}", "type": type_,
                            "userId": lead, "timestamp": (when or T0).isoformat()}
    if name:
        data["event"] = name
    data.update(kw)
    return InteractionEvent.model_validate(data)


def identify(traits: dict[str, Any] | None = None, **kw: Any) -> InteractionEvent:
    return event("identify", traits=dict(GOOD_TRAITS if traits is None else traits), **kw)


def page(path: str, **kw: Any) -> InteractionEvent:
    return event("page", properties={"path": path}, **kw)


def command(action: str, *, lead: str = "u-1", when: datetime | None = None,
            cid: str | None = None, **kw: Any) -> SalesCommand:
    return SalesCommand.model_validate({"command_id": cid or f"c-{next(_ids)}", "lead_id": lead,
                                        "action": action, "occurred_at": (when or T0).isoformat(),
                                        **kw})


def simulated_history(leads: int, seed: int, days: int = 90
                      ) -> tuple[list[Message], dict[str, float]]:
    """Simulated events and sales commands, parsed, in event-time order; with the hidden
    propensity of each lead that has one."""
    t = generate(leads, days, seed)
    msgs = [parse_event(orjson.dumps(m)) for _, m in t.events] + \
        [parse_command(orjson.dumps(c)) for _, c in t.commands]
    msgs.sort(key=message_time)
    return msgs, t.propensity
