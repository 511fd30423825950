"""Wire contracts (pydantic v2): what travels on each topic. See CONTRACT.md."""

import funnel  # noqa: F401  (first: the compiled modules' finder, ``funnel.accel``)

from schemas.commands import SalesCommand, parse_command
from schemas.events import InteractionEvent, InvalidMessage, parse_event
from schemas.handoff import CloudEvent
from schemas.lead import LeadSnapshot, TransitionRecord

__all__ = [
    "CloudEvent",
    "InteractionEvent",
    "InvalidMessage",
    "LeadSnapshot",
    "SalesCommand",
    "TransitionRecord",
    "parse_command",
    "parse_event",
]
