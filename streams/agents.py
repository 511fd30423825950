"""Thin agents: decode -> ``funnel.decide.process`` -> emit, write state, project.

State writes are coalesced: events are taken in batches; for each batch the outputs (handoffs,
transitions, snapshots, dead letters) are sent and acknowledged by the broker first, then one
changelog message per changed lead is written, then the batch is acknowledged. A crash replays
at most the last batch, and deduplication by ``messageId``/``command_id`` makes that harmless.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from funnel.config import ScoringModel
from funnel.decide import CommandRefused, new_lead, process
from funnel.model import Lead
from schemas.commands import parse_command
from schemas.events import InvalidMessage, parse_event
from schemas.handoff import handoff_event, transition_event
from schemas.lead import LeadSnapshot
from streams.settings import Settings

log = logging.getLogger("funnel.agents")

MARKER_KEY = b"\x00funnel-batch-end"
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
    started: float = field(default_factory=time.monotonic)


def dead_letter(dlq: str, message: Any, code: str, detail: str) -> Outgoing:
    headers = [("error", code.encode()), ("error_detail", detail[:2000].encode()),
               ("source_topic", message.topic.encode()),
               ("source_partition", str(message.partition).encode()),
               ("source_offset", str(message.offset).encode())]
    return Outgoing(dlq, message.key, message.value, headers)


class Pipeline:
    """One batch at a time: pure decisions, then I/O in a safe order."""

    def __init__(self, app: faust.App, table: Any, settings: Settings, model: ScoringModel,
                 topics: Any) -> None:
        self.app, self.table, self.settings, self.model, self.topics = (
            app, table, settings, model, topics)
        self.stats = Stats()

    def load(self, lead_id: str) -> Lead:
        raw = self.table.data.get(lead_id)
        if raw is None:
            return new_lead(lead_id, self.model)
        return Lead.model_validate_json(raw)

    def decide(self, events: list[Any]) -> tuple[list[Outgoing], dict[str, tuple[Lead, int]]]:
        """Run every message of the batch through the core; nothing is sent yet."""
        out: list[Outgoing] = []
        dirty: dict[str, tuple[Lead, int]] = {}
        for event in events:
            msg = event.message
            try:
                self._one(msg, out, dirty)
            except Exception as exc:  # the worker never dies on one message
                log.exception("processing failed at %s[%s]@%s", msg.topic, msg.partition, msg.offset)
                out.append(dead_letter(self.topics.dlq, msg, "processing_error",
                                       f"{type(exc).__name__}: {exc}"))
                self.stats.dead_letters += 1
        for lead, _ in dirty.values():
            out.append(Outgoing(self.topics.leads, lead.lead_id.encode(),
                                lead.snapshot().model_dump_json().encode()))
        return out, dirty

    def _one(self, msg: Any, out: list[Outgoing], dirty: dict[str, tuple[Lead, int]]) -> None:
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
        cached = dirty.get(lead_id)
        lead = cached[0] if cached else self.load(lead_id)
        try:
            new, transitions = process(lead, parsed, self.model)
        except CommandRefused as exc:
            out.append(dead_letter(self.topics.dlq, msg, "command_refused", exc.reason))
            self.stats.dead_letters += 1
            return
        if new is lead:
            return  # a duplicate: counted once already
        dirty[lead_id] = (new, msg.partition)
        if transitions:
            snap = new.snapshot()
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

    async def commit_batch(self, out: list[Outgoing], dirty: dict[str, tuple[Lead, int]]) -> None:
        """Send the outputs and wait for the broker; then write the state changelog."""
        producer = self.app.producer
        for o in out:
            await producer.send(o.topic, o.key, o.value, partition=None, timestamp=None,
                                headers=o.headers)
        await producer.flush()
        if not dirty:
            return
        partitions = set()
        for lead_id, (lead, partition) in dirty.items():
            raw = lead.model_dump_json().encode()
            self.table.data[lead_id] = raw
            self.table.send_changelog(partition, lead_id, raw)
            partitions.add(partition)
        await producer.flush()
        # End every changelog partition written with a record batch of one record (a tombstone
        # for a key no lead has). Some Kafka-compatible brokers (Tansu 0.6) report the end of a
        # partition as the base offset of its last batch + 1, and Faust's recovery stops there:
        # without this, the other records of a last multi-record batch would be skipped.
        changelog = self.table.changelog_topic.get_topic_name()
        for partition in sorted(partitions):
            await producer.send(changelog, MARKER_KEY, None, partition=partition, timestamp=None,
                                headers=None)
        await producer.flush()

    async def run_batch(self, events: list[Any]) -> None:
        out, dirty = self.decide(events)
        await self.commit_batch(out, dirty)


def install(app: faust.App, settings: Settings, model: ScoringModel, topics: Any, *,
            projection: bool = True) -> None:
    inputs = app.topic(topics.events, topics.feedback, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    table = app.Table("lead-state", default=None, partitions=settings.partitions,
                      key_type=str, value_type=bytes)
    pipeline = Pipeline(app, table, settings, model, topics)
    app.funnel_pipeline = pipeline  # type: ignore[attr-defined]

    @app.agent(inputs, name="funnel-pipeline", concurrency=1)
    async def funnel_pipeline(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.flush_max_events,
                                               within=settings.flush_interval):
            await pipeline.run_batch(list(events))

    if projection:
        install_projection(app, settings, topics)


def install_projection(app: faust.App, settings: Settings, topics: Any) -> None:
    from streams.projection import Projection

    leads = app.topic(topics.leads, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)
    writer = Projection(settings.dsn(), settings.db_schema)

    @app.agent(leads, name="funnel-projection", concurrency=1)
    async def funnel_projection(stream: faust.StreamT) -> None:
        async for values in stream.take(1000, within=0.3):
            snaps = []
            for raw in values:
                try:
                    snaps.append(LeadSnapshot.model_validate_json(raw))
                except Exception as exc:  # a foreign message on funnel.leads: skip it, say so
                    log.error("skipping an unreadable snapshot on %s: %s", topics.leads, exc)
            await writer.write(snaps)
