"""Routing as data: a topic's decoder turns bytes into a typed message; the message's type
picks its handler. The one if-chain a reader needs is the table in ``Pipeline.routes``.

Before a handler runs, two things are settled here, the same way for every topic:
- bytes that do not decode go to the DLQ with the decoder's reason (``InvalidMessage``);
- a message keyed by something else than the lead it is for goes back to its topic under the
  right key, so that all of a lead's messages meet on one partition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.commands import SalesCommand
from schemas.events import InteractionEvent
from schemas.identity import Absorb, Forward, Link
from schemas.wire import InvalidMessage
from streams.records import Source
from streams.worker.outbox import Outbox

Decoder = Callable[[bytes | None], Any]
Handler = Callable[[Any, Source], None]

# the lead (partition key) each kind of message belongs to; a kind missing here has none
OWNER: dict[type, Callable[[Any], str]] = {
    InteractionEvent: lambda m: m.lead_key,
    SalesCommand: lambda m: m.lead_id,
    Link: lambda m: m.from_,
    Absorb: lambda m: m.into,
    Forward: lambda m: m.into,
}


class Router:
    def __init__(self, outbox: Outbox, decoders: dict[str, Decoder],
                 handlers: dict[type, Handler]) -> None:
        self.outbox, self.decoders, self.handlers = outbox, decoders, handlers

    def route(self, source: Source) -> None:
        decode = self.decoders.get(source.topic)
        if decode is None:
            self.outbox.dead_letter(source, "unknown_topic", f"no route for {source.topic}")
            return
        try:
            message = decode(source.value)
        except InvalidMessage as exc:
            self.outbox.dead_letter(source, exc.code, exc.detail)
            return
        owner = OWNER.get(type(message))
        if owner is not None:
            lead_id = owner(message)
            if lead_id != key_text(source.key):
                self.outbox.rekey(source, lead_id)
                return
        self.handlers[type(message)](message, source)


def key_text(key: bytes | str | None) -> str | None:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key
