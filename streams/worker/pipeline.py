"""The pipeline: decode (``schemas``) → route → decide (``funnel``) → emit → checkpoint.

Faust-free. ``apply`` decides one input message at once, in memory; ``drain`` hands the
checkpoint what a batch changed (its records and the changed leads' states). No single message
can end the worker: whatever a handler raises becomes a ``processing_error`` dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from funnel.config import ScoringModel
from funnel.decide import CommandRefused, Message, process
from funnel.history import compact
from funnel.model import Lead
from funnel.timers import next_due, tick
from schemas.commands import SalesCommand, parse_command
from schemas.costs import AdSpend, parse_interaction
from schemas.events import InteractionEvent
from schemas.identity import Absorb, Forward, Link, parse_identity
from schemas.lead import TransitionRecord
from streams.settings import Settings
from streams.topics import Topics
from streams.worker.emit import Emitter
from streams.worker.identity import IdentityProtocol
from streams.worker.journal import Journal
from streams.worker.metrics import Metrics
from streams.records import Record, Source
from streams.worker.outbox import Outbox
from streams.worker.route import Router
from streams.worker.schedule import DeadlineSchedule
from streams.worker.store import LeadStore

log = logging.getLogger("funnel.pipeline")

SEED_STEP = 5000   # leads of the table scheduled per timer pass after a start
TIMER_STEP = 500   # leads the periodic pass decides before the agent may take messages again


class Pipeline:
    def __init__(self, store: LeadStore, settings: Settings, model: ScoringModel,
                 topics: Topics, metrics: Metrics | None = None) -> None:
        self.store, self.settings, self.model, self.topics = store, settings, model, topics
        self.metrics = metrics or Metrics()
        self.outbox = Outbox(topics, self.metrics)
        self.emitter = Emitter(self.outbox, topics, model, self.metrics)
        self.identity = IdentityProtocol(self)
        self.schedule = DeadlineSchedule()
        self.journal = Journal(store.state)
        self.resumed: set[int] = set()
        self.cooling = settings.cooling_interval > 0
        self.deadlines = settings.timer_interval > 0
        self.seeded = False
        self.seeding: Iterator[tuple[str, int]] | None = None
        max_bytes = settings.max_event_bytes
        self.router = Router(self.outbox, decoders={
            topics.events: lambda raw: parse_interaction(raw, max_bytes),
            topics.feedback: lambda raw: parse_command(raw, max_bytes),
            topics.identity: parse_identity,
        }, handlers={
            InteractionEvent: self.on_event,
            SalesCommand: self.on_command,
            AdSpend: self.on_spend,
            Link: self.identity.on_link,
            Absorb: self.identity.on_absorb,
            Forward: self.identity.on_forward,
        })

    # --- one message ---------------------------------------------------------------------

    def apply(self, source: Source) -> None:
        """Decide one input message; nothing is sent yet."""
        if source.partition not in self.resumed:
            self.resume(source.partition)
        try:
            self.router.route(source)
        except Exception as exc:  # the worker never dies on one message
            log.exception("processing failed at %s[%s]@%s", source.topic, source.partition,
                          source.offset)
            self.outbox.dead_letter(source, "processing_error", f"{type(exc).__name__}: {exc}")

    def on_event(self, event: InteractionEvent, source: Source) -> None:
        self.metrics.inc(self.metrics.events, event.type)
        self.decide(event.lead_key, event, source)

    def on_command(self, command: SalesCommand, source: Source) -> None:
        self.metrics.inc(self.metrics.commands, command.action)
        self.decide(command.lead_id, command, source)

    def on_spend(self, spend: AdSpend, source: Source) -> None:
        """Campaign spend, not a lead's interaction: on to ``funnel.costs``."""
        self.outbox.send(self.topics.costs, spend.campaign, spend.model_dump_json().encode())

    def decide(self, lead_id: str, message: Message, source: Source) -> None:
        lead = self.store.load(lead_id, source.partition)
        if lead.merged_into is not None:
            # this id now belongs to a known lead: the message goes there
            self.identity.forward(lead, compact(message))
            return
        try:
            new, transitions = process(lead, message, self.model)
        except CommandRefused as exc:
            self.outbox.dead_letter(source, "command_refused", exc.reason)
            return
        if new is not lead:   # else a duplicate: counted once already
            self.changed(lead, new, source.partition, transitions)

    # --- a changed lead --------------------------------------------------------------------

    def keep(self, lead: Lead, partition: int) -> None:
        """``lead`` is the new live state; its next deadline is scheduled."""
        self.store.keep(lead, partition)
        if self.cooling or self.deadlines:
            self.reschedule(lead, partition)

    def changed(self, old: Lead, new: Lead, partition: int, transitions: list[TransitionRecord],
                cooled: bool = False) -> None:
        """Keep ``new`` and emit what the change means."""
        self.keep(new, partition)
        self.emitter.change(old, new, transitions, cooled)

    # --- a partition taken up ----------------------------------------------------------------

    def resume(self, partition: int) -> None:
        """Before anything of ``partition`` is decided: what its last checkpoint batch may not
        have sent goes out again with the next one, unchanged (``streams.worker.journal``)."""
        self.resumed.add(partition)
        for lead_id, records in self.journal.resume(partition).items():
            self.store.keep(self.store.load(lead_id, partition), partition)
            self.outbox.records.extend(records)
            log.info("resending %d records of %s (its last batch may not have gone out)",
                     len(records), lead_id)

    def resume_all(self, assigned: set[int]) -> None:
        """Every assigned partition resumed, also those no message has come for since the start
        (a batch of the periodic pass has no message to be read again)."""
        for p in sorted(assigned - self.resumed):
            self.resume(p)

    def forget(self, partitions: set[int]) -> None:
        """The partitions were revoked: their state is read again if they come back."""
        self.store.forget(partitions)
        self.journal.forget(partitions)
        self.resumed -= partitions

    # --- the clock -------------------------------------------------------------------------

    def timer_pass(self, now: datetime, assigned: set[int], limit: int | None = None
                   ) -> tuple[int, bool]:
        """Apply the deadlines (SLA breaches, expired MQLs) and the cooling due by ``now`` to
        the leads of ours, at most ``limit`` of them; returns (how many changed, whether more
        may be due: call again). The leads already in the table after a start are scheduled by
        ``seed`` (the flush tick's). A lead whose tick fails is logged and left out of the
        schedule until it changes again (a timer must not end the worker)."""
        changed = taken = 0
        for lead_id, p in self.schedule.pop_due(now):
            if p not in assigned:
                continue
            taken += 1
            try:
                changed += self._tick(lead_id, p, now)
            except Exception:  # noqa: BLE001
                log.exception("the periodic pass failed on %s; left until it changes", lead_id)
            if limit is not None and taken >= limit:
                return changed, True
        return changed, False

    def _tick(self, lead_id: str, p: int, now: datetime) -> int:
        if p not in self.resumed:
            self.resume(p)
        lead = self.store.load(lead_id, p)
        new, transitions = tick(lead, now, self.model, cooling=self.cooling,
                                deadlines=self.deadlines)
        if new is lead:
            self.reschedule(lead, p)
            return 0
        self.changed(lead, new, p, transitions, cooled=new.temperature != lead.temperature)
        return 1

    def seed(self, assigned: set[int]) -> None:
        """Schedule the leads of the table (recovered, or on disk from an earlier run), a step at
        a time, so that a large table never holds the event loop for long. Nothing to do when
        neither timer runs."""
        if self.seeding is None:
            if self.seeded or not (self.cooling or self.deadlines):
                return
            self.seeded = True
            self.seeding = iter([(k, p) for p in sorted(assigned) for k in self.store.keys(p)])
        taken = 0
        for lead_id, p in self.seeding:
            if lead_id not in self.schedule:
                self.reschedule(self.store.load(lead_id, p), p)
            taken += 1
            if taken >= SEED_STEP:
                return
        self.seeding = None

    def reschedule(self, lead: Lead, partition: int) -> None:
        """When the periodic pass next needs ``lead``."""
        self.schedule.set(lead.lead_id, next_due(lead, self.model, cooling=self.cooling),
                          partition)

    # --- the batch -------------------------------------------------------------------------

    def dirty(self) -> bool:
        return bool(self.outbox) or bool(self.store.dirty)

    def drain(self) -> tuple[list[Record], dict[str, tuple[int, Lead]]]:
        """What the batch changed: the records to send (a snapshot per changed lead last) and
        the changed leads' states for the changelog."""
        state = self.store.take_dirty()
        for _, lead in state.values():
            self.emitter.snapshot(lead)
        self.metrics.publish()   # the batch's counts
        return self.outbox.take(), state
