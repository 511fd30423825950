"""The worker's side of the identity protocol (``schemas.identity``): link → absorb → forward.

Each handler runs on the partition of the lead the message is for (the router re-keys it
there first). ``Absorb`` and ``Forward`` that reach an id merged on again (an alias of an
alias) follow the chain, at most ``MAX_HOPS`` times; past that they are dead-lettered
(``identity_loop``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from funnel.decide import CommandRefused, process
from funnel.history import Item, is_command, item_id, item_time, revive
from funnel.merge import LinkRefused, accept_link, merge
from funnel.model import Lead
from schemas.dumps import absorb_json, forward_json
from schemas.identity import MAX_HOPS, Absorb, Forward, Link
from streams.records import Source

if TYPE_CHECKING:
    from streams.worker.pipeline import Pipeline

log = logging.getLogger("funnel.identity")


class IdentityProtocol:
    def __init__(self, pipeline: "Pipeline") -> None:
        self.p = pipeline

    def on_link(self, link: Link, source: Source) -> None:
        """Merge this id into ``link.into`` (unless it is somebody else) and hand over its
        history."""
        p = self.p
        lead = p.store.load(link.from_, source.partition)
        try:
            marked, history = accept_link(lead, link.into, link.email, link.via)
        except LinkRefused as exc:
            log.info("identity link refused: %s", exc)
            p.metrics.inc(p.metrics.identity, "link_refused")
            p.outbox.dead_letter(source, "link_refused", str(exc))
            return
        if marked is None:
            return   # already merged there
        p.keep(marked, source.partition)
        p.emitter.identity(link.into, link.from_,
                           absorb_json(link.from_, link.into, link.at, history))

    def on_absorb(self, absorb: Absorb, source: Source) -> None:
        """Replay the merged id's history into this lead."""
        lead = self._owner(absorb, source)
        if lead is None:
            return
        at = absorb.at or lead.last_activity_at or datetime.now(timezone.utc)
        items = [i.model_dump() for i in absorb.items]
        new, transitions = merge(lead, items, absorb.from_, at, self.p.model)
        if new is lead:
            return   # the same absorb again (read again after a restart)
        self.p.metrics.inc(self.p.metrics.identity, "merge")
        self.p.changed(lead, new, source.partition, transitions)

    def on_forward(self, forward: Forward, source: Source) -> None:
        """A message sent to the merged id: a command is applied as usual, an event is
        replayed into the lead's history in event time."""
        lead = self._owner(forward, source)
        if lead is None:
            return
        item = forward.item.model_dump()
        if is_command(item):
            try:
                new, transitions = process(lead, revive(item), self.p.model)  # type: ignore[arg-type]
            except CommandRefused as exc:
                self.p.outbox.dead_letter(source, "command_refused", exc.reason)
                return
        else:
            if item_id(item) in lead.seen_ids:
                return
            new, transitions = merge(lead, [item], None, item_time(item), self.p.model)
        if new is not lead:
            self.p.changed(lead, new, source.partition, transitions)

    def forward(self, lead: Lead, item: Item) -> None:
        """``item`` arrived under ``lead``'s id, which is merged into another lead."""
        self.p.metrics.inc(self.p.metrics.identity, "forward")
        self.p.emitter.identity(lead.merged_into or "", None,
                                forward_json(lead.lead_id, lead.merged_into or "", item, 1))

    def _owner(self, message: Absorb | Forward, source: Source) -> Lead | None:
        """The lead ``message`` is for; None when it was merged on (the message follows) or
        the chain is too long (dead-lettered)."""
        lead = self.p.store.load(message.into, source.partition)
        if lead.merged_into is None:
            return lead
        if message.hops >= MAX_HOPS:
            self.p.outbox.dead_letter(source, "identity_loop",
                                      f"more than {MAX_HOPS} merged ids in a row")
            return None
        self.p.emitter.identity(lead.merged_into, None, message.model_copy(
            update={"into": lead.merged_into, "hops": message.hops + 1}).encode())
        return None
