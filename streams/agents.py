"""Thin agents: decode -> ``funnel.decide.process`` -> emit, write state, project.

Each message is decided at once; writes are coalesced per batch: the outputs (handoffs,
transitions, snapshots, dead letters) are sent and acknowledged by the broker first, then one
changelog record per changed lead, then the batch's messages are acknowledged. A crash replays at
most the unacknowledged batch, and deduplication by ``messageId``/``command_id`` makes that
harmless. The projection agent batches the same way and acknowledges after PostgreSQL commits.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any

import faust

from funnel.config import ScoringModel
from funnel.decide import CommandRefused, cool, cools_at, new_lead, process
from funnel.model import Lead
from schemas.commands import parse_command
from schemas.events import InvalidMessage, parse_event
from schemas.handoff import cooled_event, handoff_event, transition_event
from schemas.lead import LeadSnapshot
from streams.settings import Settings

log = logging.getLogger("funnel.agents")

MARKER_KEY = "\x00funnel-batch-end"   # no lead has this id
CLOUDEVENT_HEADERS = [("content-type", b"application/cloudevents+json")]


@dataclass
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Stats:
    events: int = 0
    commands: int = 0
    dead_letters: int = 0
    transitions: int = 0
    handoffs: int = 0
    cooled: int = 0
    started: float = field(default_factory=time.monotonic)


def dead_letter(dlq: str, message: Any, code: str, detail: str) -> Outgoing:
    headers = [("error", code.encode()), ("error_detail", detail[:2000].encode()),
               ("source_topic", message.topic.encode()),
               ("source_partition", str(message.partition).encode()),
               ("source_offset", str(message.offset).encode())]
    return Outgoing(dlq, message.key, message.value, headers)


def seeked(app: faust.App) -> bool:
    """Whether Faust has sought the stream partitions to their committed offsets.

    Faust resumes the stream partitions just before that seek, so messages can arrive first and
    then again from the committed offset. Taking those early deliveries made the restarted worker
    lose messages and its commits crawl (the crash test caught both); they are left unacknowledged
    and taken when they come again after the seek."""
    return app.tables.recovery.completed.is_set()


class Pipeline:
    """Decides each message at once (pure, in memory); writes behind, in batches.

    ``apply`` runs every message through the core and keeps the new lead as this worker's live
    state. ``flush`` (every ``flush_max_events`` messages, every ``flush_interval`` seconds, and
    before partitions are revoked) sends the outputs and waits for the broker, then writes one
    changelog record per changed lead, then acknowledges the messages so that their offsets can
    be committed. Faust's ``take_events`` is not used: it can acknowledge a message that arrives
    while a batch is being acknowledged without ever yielding it.
    """

    def __init__(self, app: faust.App, table: Any, settings: Settings, model: ScoringModel,
                 topics: Any) -> None:
        self.app, self.table, self.settings, self.model, self.topics = (
            app, table, settings, model, topics)
        self.stats = Stats()
        self.started: set[tuple[str, int]] = set()
        # partition -> lead id -> state: the live state of the leads this worker changed since
        # it was assigned the partition; authoritative over the Table's store
        self.live: dict[int, dict[str, Lead]] = {}
        self.out: list[Outgoing] = []
        self.dirty: dict[str, int] = {}          # lead id -> partition, not yet in the changelog
        self.pending: list[tuple[Any, Any]] = []  # (stream, event) not yet acknowledged
        self.lock = asyncio.Lock()
        self.half_life = model.interest.half_life_days
        # cooling: where each lead lives, and when its temperature will next drop
        self.partition_of: dict[str, int] = {}
        self.cool_next: dict[str, datetime] = {}
        self.cool_heap: list[tuple[datetime, str]] = []
        self.seeded = False
        self.batch_started = time.monotonic()

    def load(self, lead_id: str, partition: int) -> Lead:
        live = self.live.get(partition, {}).get(lead_id)
        if live is not None:
            return live
        raw = self.table.data.get(lead_id)
        if raw is None:
            return new_lead(lead_id, self.model)
        return Lead.model_validate_json(raw)

    def apply(self, stream: Any, event: Any) -> None:
        """Decide one message; nothing is sent yet."""
        msg = event.message
        tp = (msg.topic, msg.partition)
        if tp not in self.started:
            self.started.add(tp)
            log.info("first message from %s[%s] at offset %s", *tp, msg.offset)
        if not self.pending:
            self.batch_started = time.monotonic()
        self.pending.append((stream, event))
        try:
            self._one(msg)
        except Exception as exc:  # the worker never dies on one message
            log.exception("processing failed at %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            self.out.append(dead_letter(self.topics.dlq, msg, "processing_error",
                                        f"{type(exc).__name__}: {exc}"))
            self.stats.dead_letters += 1

    def keep(self, lead: Lead, partition: int) -> None:
        """``lead`` is the new live state; schedule its cooling."""
        self.live.setdefault(partition, {})[lead.lead_id] = lead
        self.dirty[lead.lead_id] = partition
        self.partition_of[lead.lead_id] = partition
        self.schedule(lead)

    def schedule(self, lead: Lead) -> None:
        if self.settings.cooling_interval <= 0:
            return
        when = cools_at(lead, self.model)
        if when is None:
            self.cool_next.pop(lead.lead_id, None)
        elif self.cool_next.get(lead.lead_id) != when:
            self.cool_next[lead.lead_id] = when
            heapq.heappush(self.cool_heap, (when, lead.lead_id))
            if len(self.cool_heap) > 2 * len(self.cool_next) + 1024:
                # most entries were superseded by later events: keep one per lead
                self.cool_heap = [(t, k) for k, t in self.cool_next.items()]
                heapq.heapify(self.cool_heap)

    def on_changelog_event(self, key: Any, partition: int) -> None:
        """Table recovery: remember which partition a lead lives in."""
        if isinstance(key, str) and not key.startswith("\x00"):
            self.partition_of[key] = partition

    def cooling_pass(self, now: datetime, assigned: set[int]) -> int:
        """Cool every lead of ours whose temperature has dropped by ``now``."""
        if not self.seeded:   # leads recovered from the changelog: schedule them once
            self.seeded = True
            for lead_id, p in list(self.partition_of.items()):
                if lead_id not in self.cool_next and p in assigned:
                    self.schedule(self.load(lead_id, p))
        cooled = 0
        while self.cool_heap and self.cool_heap[0][0] <= now:
            when, lead_id = heapq.heappop(self.cool_heap)
            if self.cool_next.get(lead_id) != when:
                continue   # rescheduled since
            del self.cool_next[lead_id]
            p = self.partition_of.get(lead_id)
            if p is None or p not in assigned:
                continue
            lead = self.load(lead_id, p)
            new = cool(lead, now, self.model)
            if new is not lead:
                self.keep(new, p)
                ce = cooled_event(new.snapshot(), lead.temperature)
                self.out.append(Outgoing(self.topics.transitions, lead_id.encode(),
                                         ce.model_dump_json().encode(), CLOUDEVENT_HEADERS))
                cooled += 1
            else:
                self.schedule(lead)
        self.stats.cooled += cooled
        return cooled

    def due(self) -> bool:
        return bool(self.pending) and (
            len(self.pending) >= self.settings.flush_max_events
            or time.monotonic() - self.batch_started >= self.settings.flush_interval)

    def _one(self, msg: Any) -> None:
        out = self.out
        is_event = msg.topic == self.topics.events
        try:
            parsed = (parse_event(msg.value, self.settings.max_event_bytes) if is_event
                      else parse_command(msg.value, self.settings.max_event_bytes))
        except InvalidMessage as exc:
            out.append(dead_letter(self.topics.dlq, msg, exc.code, exc.detail))
            self.stats.dead_letters += 1
            return
        lead_id = parsed.lead_key if is_event else parsed.lead_id  # type: ignore[union-attr]
        key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else msg.key
        if key != lead_id:
            # keyed by something else: re-key so that all of a lead's messages meet in one place
            out.append(Outgoing(msg.topic, lead_id.encode(), msg.value, list(msg.headers or [])))
            return
        if is_event:
            self.stats.events += 1
        else:
            self.stats.commands += 1
        lead = self.load(lead_id, msg.partition)
        try:
            new, transitions = process(lead, parsed, self.model)
        except CommandRefused as exc:
            out.append(dead_letter(self.topics.dlq, msg, "command_refused", exc.reason))
            self.stats.dead_letters += 1
            return
        if new is lead:
            return  # a duplicate: counted once already
        self.keep(new, msg.partition)
        if transitions:
            snap = new.snapshot(self.half_life)
            for t in transitions:
                ce = transition_event(t, snap)
                out.append(Outgoing(self.topics.transitions, lead_id.encode(),
                                    ce.model_dump_json().encode(), CLOUDEVENT_HEADERS))
                handoff = handoff_event(t, snap)
                if handoff is not None:
                    out.append(Outgoing(self.topics.handoff(t.to_stage), lead_id.encode(),
                                        handoff.model_dump_json().encode(), CLOUDEVENT_HEADERS))
                    self.stats.handoffs += 1
            self.stats.transitions += len(transitions)

    async def flush(self) -> None:
        """Outputs first (and acknowledged by the broker), then state, then the offsets."""
        async with self.lock:
            if not self.pending and not self.dirty and not self.out:
                return
            out, dirty, pending = self.out, self.dirty, self.pending
            self.out, self.dirty, self.pending = [], {}, []
            producer = self.app.producer
            leads = {lead_id: self.live[p][lead_id] for lead_id, p in dirty.items()}
            for lead_id, lead in leads.items():
                out.append(Outgoing(self.topics.leads, lead_id.encode(),
                                    lead.snapshot(self.half_life).model_dump_json().encode()))
            for o in out:
                await producer.send(o.topic, o.key, o.value, partition=None, timestamp=None,
                                    headers=o.headers)
            await producer.flush()
            if dirty:
                for lead_id, partition in dirty.items():
                    raw = leads[lead_id].model_dump_json().encode()
                    self.table.data[lead_id] = raw
                    self.table.send_changelog(partition, lead_id, raw)
                await producer.flush()
                # End every changelog partition written with a record batch of one record (for
                # a key no lead has). Some Kafka-compatible brokers (Tansu 0.6) report the end
                # of a partition as the base offset of its last batch + 1, and Faust's recovery
                # stops there: without this, the other records of a last multi-record batch
                # would be skipped.
                for partition in sorted(set(dirty.values())):
                    self.table.send_changelog(partition, MARKER_KEY, b"{}")
                await producer.flush()
            for stream, event in pending:
                await stream.ack(event)

    async def on_revoked(self, partitions: set[int]) -> None:
        """Write what is pending while the partitions are still ours; then forget their live
        state (it is recovered from the changelog when they come back)."""
        await self.flush()
        for p in partitions:
            self.live.pop(p, None)


def install(app: faust.App, settings: Settings, model: ScoringModel, topics: Any, *,
            projection: bool = True) -> None:
    inputs = app.topic(topics.events, topics.feedback, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    pipeline: Pipeline | None = None

    async def on_changelog_event(event: Any) -> None:
        if pipeline is not None:
            pipeline.on_changelog_event(event.key, event.message.partition)

    table = app.Table("lead-state", default=None, partitions=settings.partitions,
                      key_type=str, value_type=bytes, on_changelog_event=on_changelog_event)
    pipeline = Pipeline(app, table, settings, model, topics)
    app.funnel_pipeline = pipeline  # type: ignore[attr-defined]

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
        await pipeline.on_revoked({tp.partition for tp in revoked if tp.topic == topics.events})

    @app.agent(inputs, name="funnel-pipeline", concurrency=1)
    async def funnel_pipeline(stream: faust.StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            if not seeked(app):
                continue
            pipeline.apply(manual, event)
            if pipeline.due():
                await pipeline.flush()

    @app.timer(settings.flush_interval)
    async def flush_idle_batch() -> None:
        if pipeline.due():
            await pipeline.flush()

    if settings.cooling_interval > 0:
        @app.timer(settings.cooling_interval)
        async def cooling_pass() -> None:
            assigned = {tp.partition for tp in app.consumer.assignment()
                        if tp.topic == topics.events}
            if pipeline.cooling_pass(datetime.now(timezone.utc), assigned):
                await pipeline.flush()

    if projection:
        install_projection(app, settings, topics)


def install_projection(app: faust.App, settings: Settings, topics: Any) -> None:
    from streams.projection import Projection

    leads = app.topic(topics.leads, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)
    writer = Projection(settings.dsn(), settings.db_schema)
    batch: list[tuple[Any, Any, LeadSnapshot | None]] = []
    lock = asyncio.Lock()
    started = [time.monotonic()]

    async def flush() -> None:
        async with lock:
            if not batch:
                return
            taken = batch[:]
            del batch[:]
            await writer.write(s for _, _, s in taken if s is not None)
            for stream, event, _ in taken:
                await stream.ack(event)

    def due() -> bool:
        return bool(batch) and (len(batch) >= 1000 or time.monotonic() - started[0] >= 0.3)

    @app.agent(leads, name="funnel-projection", concurrency=1)
    async def funnel_projection(stream: faust.StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            if not seeked(app):
                continue
            try:
                snap: LeadSnapshot | None = LeadSnapshot.model_validate_json(event.value)
            except Exception as exc:  # a foreign message on funnel.leads: skip it, say so
                log.error("skipping an unreadable snapshot on %s: %s", topics.leads, exc)
                snap = None
            if not batch:
                started[0] = time.monotonic()
            batch.append((manual, event, snap))
            if due():
                await flush()

    @app.timer(0.3)
    async def flush_projection() -> None:
        if due():
            await flush()

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
        await flush()
