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

import orjson

from funnel.config import ScoringModel
from funnel.decide import (
    CommandRefused, LinkRefused, _compact, _item_id, _item_time, _revive, accept_link, merge,
    new_lead, next_due, process, tick)
from funnel.model import Lead
from schemas.collect import parse_time
from schemas.commands import parse_command
from schemas.costs import AdSpend, spend_of
from schemas.events import InvalidMessage, parse_event
from schemas.handoff import cooled_event, handoff_event, sla_breached_event, transition_event
from schemas.lead import LeadSnapshot
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger("funnel.agents")

MARKER_KEY = "\x00funnel-batch-end"   # no lead has this id
MAX_HOPS = 5                           # identity forwards followed before giving up
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
    alerts: int = 0
    merges: int = 0
    forwarded: int = 0
    links_refused: int = 0
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
                 topics: Any, metrics: Metrics | None = None) -> None:
        self.app, self.table, self.settings, self.model, self.topics = (
            app, table, settings, model, topics)
        self.metrics = metrics
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
        """``lead`` is the new live state; schedule its timers."""
        self.live.setdefault(partition, {})[lead.lead_id] = lead
        self.dirty[lead.lead_id] = partition
        self.partition_of[lead.lead_id] = partition
        self.schedule(lead)

    @property
    def cooling(self) -> bool:
        return self.settings.cooling_interval > 0

    def schedule(self, lead: Lead) -> None:
        if self.settings.cooling_interval <= 0 and self.settings.timer_interval <= 0:
            return
        when = next_due(lead, self.model, cooling=self.cooling)
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

    def timer_pass(self, now: datetime, assigned: set[int]) -> int:
        """Apply the deadlines (SLA breaches, expired MQLs) and the cooling due by ``now`` to
        every lead of ours. The schedule is rebuilt from the recovered state after a restart."""
        if not self.seeded:   # leads recovered from the changelog: schedule them once
            self.seeded = True
            for lead_id, p in list(self.partition_of.items()):
                if lead_id not in self.cool_next and p in assigned:
                    self.schedule(self.load(lead_id, p))
        changed = 0
        while self.cool_heap and self.cool_heap[0][0] <= now:
            when, lead_id = heapq.heappop(self.cool_heap)
            if self.cool_next.get(lead_id) != when:
                continue   # rescheduled since
            del self.cool_next[lead_id]
            p = self.partition_of.get(lead_id)
            if p is None or p not in assigned:
                continue
            lead = self.load(lead_id, p)
            new, transitions = tick(lead, now, self.model, cooling=self.cooling,
                                    deadlines=self.settings.timer_interval > 0)
            if new is not lead:
                self.changed(lead, new, p, transitions,
                             cooled=new.temperature != lead.temperature)
                changed += 1
            else:
                self.schedule(lead)
        return changed

    def changed(self, old: Lead, new: Lead, partition: int, transitions: list[Any],
                cooled: bool = False) -> None:
        """Keep ``new`` and emit what the change means: transitions and handoffs, an SLA alert,
        a cooled temperature, link requests for ids it was known by."""
        self.keep(new, partition)
        lead_id = new.lead_id.encode()
        out = self.out
        breached = new.sla_breached_at is not None and new.sla_breached_at != old.sla_breached_at
        snap = new.snapshot(self.half_life) if (transitions or breached) else None
        for t in transitions:
            assert snap is not None
            ce = transition_event(t, snap)
            out.append(Outgoing(self.topics.transitions, lead_id, ce.model_dump_json().encode(),
                                CLOUDEVENT_HEADERS))
            handoff = handoff_event(t, snap)
            if handoff is not None:
                out.append(Outgoing(self.topics.handoff(t.to_stage), lead_id,
                                    handoff.model_dump_json().encode(), CLOUDEVENT_HEADERS))
                self.stats.handoffs += 1
        self.stats.transitions += len(transitions)
        if self.metrics is not None:
            for t in transitions:
                self.metrics.transitions.labels(t.to_stage).inc()
        if breached:
            assert snap is not None
            alert = sla_breached_event(snap, self.model.lifecycle.sla.sql_hours)
            out.append(Outgoing(self.topics.alerts, lead_id, alert.model_dump_json().encode(),
                                CLOUDEVENT_HEADERS))
            self.stats.alerts += 1
        if cooled and new.interest_at is not None:
            ce = cooled_event(new.snapshot(self.half_life), old.temperature)
            out.append(Outgoing(self.topics.transitions, lead_id, ce.model_dump_json().encode(),
                                CLOUDEVENT_HEADERS))
            self.stats.cooled += 1
        for other in new.aliases:
            if other not in old.aliases and other not in new.merged_from:
                self.send_identity(other, {
                    "kind": "link", "from": other, "into": new.lead_id,
                    "email": new.traits.get("email"),
                    "at": _iso(_item_time(new.history[-1]) if new.history
                               else new.last_activity_at),
                    "via": "alias" if _last_type(new) == "alias" else "identify"})

    def send_identity(self, key: str, message: dict[str, Any]) -> None:
        self.out.append(Outgoing(self.topics.identity, key.encode(), orjson.dumps(message)))

    def due(self) -> bool:
        return bool(self.pending) and (
            len(self.pending) >= self.settings.flush_max_events
            or time.monotonic() - self.batch_started >= self.settings.flush_interval)

    def _one(self, msg: Any) -> None:
        out = self.out
        if msg.topic == self.topics.identity:
            self._identity(msg)
            return
        is_event = msg.topic == self.topics.events
        try:
            parsed = (parse_event(msg.value, self.settings.max_event_bytes) if is_event
                      else parse_command(msg.value, self.settings.max_event_bytes))
        except InvalidMessage as exc:
            out.append(dead_letter(self.topics.dlq, msg, exc.code, exc.detail))
            self.stats.dead_letters += 1
            return
        if is_event:
            try:
                spend = spend_of(parsed)  # type: ignore[arg-type]
            except ValueError as exc:
                out.append(dead_letter(self.topics.dlq, msg, "invalid_spend", str(exc)))
                self.stats.dead_letters += 1
                return
            if spend is not None:   # campaign spend, not a lead's interaction
                out.append(Outgoing(self.topics.costs, spend.campaign.encode(),
                                    spend.model_dump_json().encode()))
                return
        lead_id = parsed.lead_key if is_event else parsed.lead_id  # type: ignore[union-attr]
        key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else msg.key
        if key != lead_id:
            # keyed by something else: re-key so that all of a lead's messages meet in one place
            out.append(Outgoing(msg.topic, lead_id.encode(), msg.value, list(msg.headers or [])))
            return
        if is_event:
            self.stats.events += 1
            if self.metrics is not None:
                self.metrics.events.labels(parsed.type).inc()  # type: ignore[union-attr]
        else:
            self.stats.commands += 1
            if self.metrics is not None:
                self.metrics.commands.labels(parsed.action).inc()  # type: ignore[union-attr]
        lead = self.load(lead_id, msg.partition)
        if lead.merged_into is not None:
            # this id now belongs to a known lead: the message goes there
            self.forward(lead, parsed, 1)
            return
        try:
            new, transitions = process(lead, parsed, self.model)
        except CommandRefused as exc:
            out.append(dead_letter(self.topics.dlq, msg, "command_refused", exc.reason))
            self.stats.dead_letters += 1
            return
        if new is lead:
            return  # a duplicate: counted once already
        self.changed(lead, new, msg.partition, transitions)

    def forward(self, lead: Lead, message: Any, hops: int) -> None:
        self.stats.forwarded += 1
        item = message if isinstance(message, dict) else _compact(message)
        self.send_identity(lead.merged_into or "", {
            "kind": "forward", "from": lead.lead_id, "into": lead.merged_into, "item": item,
            "hops": hops})

    def _identity(self, msg: Any) -> None:
        """The identity protocol between partitions (``funnel.identity``, keyed by the lead it
        is for): ``link`` asks an id to merge into a known lead, ``absorb`` hands its history
        over, ``forward`` brings a message that arrived under a merged id."""
        try:
            m = orjson.loads(msg.value)
            kind, target = m["kind"], (m["from"] if m["kind"] == "link" else m["into"])
            if kind not in ("link", "absorb", "forward") or not isinstance(target, str):
                raise ValueError(f"unknown kind {kind!r}")
        except Exception as exc:
            self.out.append(dead_letter(self.topics.dlq, msg, "invalid_identity_message",
                                        f"{type(exc).__name__}: {exc}"))
            self.stats.dead_letters += 1
            return
        key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else msg.key
        if key != target:
            self.out.append(Outgoing(msg.topic, target.encode(), msg.value))
            return
        p = msg.partition
        lead = self.load(target, p)
        if kind == "link":
            try:
                marked, history = accept_link(lead, m["into"], m.get("email"), m.get("via", ""))
            except LinkRefused as exc:
                log.info("identity link refused: %s", exc)
                self.stats.links_refused += 1
                self.out.append(dead_letter(self.topics.dlq, msg, "link_refused", str(exc)))
                return
            if marked is None:
                return   # already merged there
            self.keep(marked, p)
            self.send_identity(m["into"], {"kind": "absorb", "from": target, "into": m["into"],
                                           "at": m.get("at"), "items": history})
            return
        hops = int(m.get("hops", 0))
        if lead.merged_into is not None:   # merged on again (an alias chain): follow it
            if hops >= MAX_HOPS:
                self.out.append(dead_letter(self.topics.dlq, msg, "identity_loop",
                                            f"more than {MAX_HOPS} merged ids in a row"))
                self.stats.dead_letters += 1
                return
            fwd = dict(m, into=lead.merged_into, hops=hops + 1)
            self.send_identity(lead.merged_into, fwd)
            return
        if kind == "absorb":
            at = parse_time(m.get("at")) or lead.last_activity_at or datetime.now(timezone.utc)
            new, transitions = merge(lead, list(m.get("items") or []), m["from"], at, self.model)
            self.stats.merges += 1
            self.changed(lead, new, p, transitions)
            return
        item = m["item"]
        if item.get("k") == "c":   # a sales command sent to the merged id: applied as usual
            command = _revive(item)
            try:
                new, transitions = process(lead, command, self.model)
            except CommandRefused as exc:
                self.out.append(dead_letter(self.topics.dlq, msg, "command_refused", exc.reason))
                self.stats.dead_letters += 1
                return
        else:   # an event: replayed into the lead's history in event time
            if _item_id(item) in lead.seen_ids:
                return
            new, transitions = merge(lead, [item], None, _item_time(item), self.model)
        if new is not lead:
            self.changed(lead, new, p, transitions)

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
            self.count(out)
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

    def count(self, out: list[Outgoing]) -> None:
        """Prometheus counters of what a flush sends: dead letters by reason, handoffs by stage,
        stage changes by stage."""
        m, t = self.metrics, self.topics
        if m is None:
            return
        handoffs = {t.handoff_mql: "mql", t.handoff_sql: "sql", t.handoff_customer: "customer"}
        for o in out:
            if o.topic == t.dlq:
                m.dead_letters.labels(dict(o.headers).get("error", b"").decode()).inc()
            elif o.topic in handoffs:
                m.handoffs.labels(handoffs[o.topic]).inc()
            elif o.topic == t.alerts:
                m.alerts.inc()

    async def on_revoked(self, partitions: set[int]) -> None:
        """Write what is pending while the partitions are still ours; then forget their live
        state (it is recovered from the changelog when they come back)."""
        await self.flush()
        for p in partitions:
            self.live.pop(p, None)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _last_type(lead: Lead) -> str | None:
    return lead.history[-1]["m"].get("type") if lead.history else None


def install(app: faust.App, settings: Settings, model: ScoringModel, topics: Any, *,
            projection: bool = True, metrics: Metrics | None = None) -> None:
    inputs = app.topic(topics.events, topics.feedback, topics.identity, key_type=bytes,
                       value_type=bytes,
                       key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    pipeline: Pipeline | None = None

    async def on_changelog_event(event: Any) -> None:
        if pipeline is not None:
            pipeline.on_changelog_event(event.key, event.message.partition)

    table = app.Table("lead-state", default=None, partitions=settings.partitions,
                      key_type=str, value_type=bytes, on_changelog_event=on_changelog_event)
    pipeline = Pipeline(app, table, settings, model, topics, metrics)
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

    intervals = [i for i in (settings.cooling_interval, settings.timer_interval) if i > 0]
    if intervals:
        @app.timer(min(intervals))
        async def timer_pass() -> None:
            if not seeked(app):
                return
            assigned = {tp.partition for tp in app.consumer.assignment()
                        if tp.topic == topics.events}
            if pipeline.timer_pass(datetime.now(timezone.utc), assigned):
                await pipeline.flush()

    if projection:
        install_projection(app, settings, topics, metrics)


def install_projection(app: faust.App, settings: Settings, topics: Any,
                       metrics: Metrics | None = None) -> None:
    from streams.projection import Projection

    leads = app.topic(topics.leads, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)
    writer = Projection(settings.dsn(), settings.db_schema)
    batch: list[tuple[Any, Any, LeadSnapshot | None]] = []
    lag: dict[int, int] = {}   # partition -> snapshots behind its high watermark
    lock = asyncio.Lock()
    started = [time.monotonic()]

    async def flush() -> None:
        async with lock:
            if not batch:
                return
            taken = batch[:]
            del batch[:]
            written = await writer.write(s for _, _, s in taken if s is not None)
            for stream, event, _ in taken:
                await stream.ack(event)
            if metrics is not None:
                metrics.projected.inc(written)
                for _, event, _ in taken:
                    msg = event.message
                    lag[msg.partition] = max((app.consumer.highwater(msg.tp) or 0)
                                             - msg.offset - 1, 0)
                metrics.set_projection_lag(sum(lag.values()))
                newest = taken[-1][1].message.timestamp
                metrics.projection_lag_seconds.set(max(time.time() - newest, 0.0))

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

    spend_writer = Projection(settings.dsn(), settings.db_schema)
    costs = app.topic(topics.costs, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)

    @app.agent(costs, name="funnel-costs", concurrency=1)
    async def funnel_costs(stream: faust.StreamT) -> None:
        """Campaign spend into ``campaign_costs`` (low volume: one upsert per report)."""
        manual = stream.noack()
        async for event in manual.events():
            if not seeked(app):
                continue
            try:
                spend = AdSpend.model_validate_json(event.value)
            except Exception as exc:  # a foreign message on funnel.costs: skip it, say so
                log.error("skipping an unreadable spend on %s: %s", topics.costs, exc)
            else:
                await spend_writer.write_spend(spend)
            await manual.ack(event)
