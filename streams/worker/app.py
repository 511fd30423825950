"""The Faust wiring, and only wiring: the app, the lead-state table, three agents and the
timers. What each piece does lives beside it: ``pipeline`` (decide), ``checkpoint`` (the commit
protocol), ``sinks`` (PostgreSQL writers), ``faust_glue`` (adapters, and why the seek is
patched)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import faust

from funnel import accel
from funnel.config import ScoringModel
from streams.db.writer import Projection
from streams.settings import Settings
from streams.topics import Topics
from streams.worker import web
from streams.worker.checkpoint import Checkpoint, WriteBehind
from streams.worker.faust_glue import (FaustProducer, ack, admitted, fetch_wait,
                                       flush_before_wait_empty, highwater, refused,
                                       reread_stuck, seek_before_resume, seek_in_place, seeked,
                                       settle, watch_positions)
from streams.worker.faust_deliver import deliver_in_batches, deliver_without_tasks
from streams.worker.faust_inbox import Inbox
from streams.worker.fetch_order import InTime, hand_out_in_time
from streams.worker.faust_state import FaustChangelog, RocksState
from streams.worker.metrics import Metrics
from streams.records import Source
from streams.worker.pipeline import TIMER_STEP, Pipeline
from streams.worker.positions import TAKE, Positions
from streams.worker.progress import Progress
from streams.worker.sinks import ProjectionSink, TopicSink, spend_sink
from streams.worker.store import LeadStore, MemoryState

log = logging.getLogger("funnel.app")
TAKE_AT_ONCE = 500   # messages the pipeline agent takes from its inbox at a time


def create_app(settings: Settings, model: ScoringModel, *, role: str = "worker",
               projection_url: str | None = None) -> faust.App:
    """Build a worker app. ``role``: ``worker`` (the pipeline, and the projection too when
    ``FUNNEL_PROJECTION=inline``) or ``projection`` (only the projection, in its own consumer
    group: ``funnel projection``, which ``funnel worker`` starts as a child process by default;
    its pages at ``projection_url``). Faust's own env vars (BROKER_URL, …) are not used."""
    seek_before_resume()
    seek_in_place()
    hand_out_in_time()   # the pipeline adds the topics it serves first
    deliver_without_tasks()
    deliver_in_batches()
    fetch_wait(settings.fetch_wait)
    assert settings.broker, "FUNNEL_BROKER must be set for a worker"
    pipeline = role == "worker"
    projection = role == "projection" or settings.projection == "inline"
    log.info("funnel %s: the core %s", role, accel.describe())
    app_id = settings.app_id if pipeline else settings.projection_group
    datadir = (settings.data_dir / "worker" / app_id).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id, broker=settings.broker, store=f"{settings.state_store}://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout, broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0, consumer_auto_offset_reset="earliest",
        table_standby_replicas=0, web_enabled=settings.worker_port > 0,
        web_port=settings.worker_port or 6066, web_bind=settings.http_host,
        web_host=settings.http_host, autodiscover=False, producer_acks=-1,
        producer_max_batch_size=1 << 20, producer_max_request_size=4 << 20,
        producer_compression_type=settings.compression_type(),
        # smaller fetches and polls than Faust's (1 MiB a partition, everything fetched): with
        # ``hand_out_in_time`` (``install_pipeline``) the identity messages this worker sends itself
        # no longer wait behind megabytes of events fetched before them (README, "Fetching")
        consumer_max_fetch_size=64 << 10, broker_max_poll_records=1000,
        ConsumerScheduler=InTime)
    metrics, topics = Metrics(), Topics.from_settings(settings)
    progress, positions = Progress(settings.stall_seconds), Positions()
    consumed = set((topics.inputs() if pipeline else []) + (topics.projected() if projection
                                                            else []))
    watch_positions(app, positions)
    if settings.worker_port > 0:
        web.install(app, settings, metrics, progress, positions, consumed,
                    sensor_prefix="funnel_faust" if pipeline else "funnel_projection_faust",
                    projection_url=projection_url)
    if pipeline:
        install_pipeline(app, settings, model, topics, metrics, progress, positions)
    if projection:
        install_sinks(app, settings, topics, metrics, progress, positions)

    @app.timer(max(settings.reread_seconds / 3, 0.5))
    async def reread() -> None:   # a partition left behind (``Progress.stuck``)
        if seeked(app):
            try:
                metrics.reread.inc(await reread_stuck(app, progress, positions, consumed,
                                                      settings.reread_seconds))
            except Exception:  # noqa: BLE001  (a timer must not end the worker)
                log.exception("reading a stuck partition again failed; tried again later")
    return app


def rocksdb_options(settings: Settings, part: float) -> dict[str, int]:
    """RocksDB's memory for one table: ``part`` of ``FUNNEL_STATE_MEMORY_MB``, all its partitions
    together. Faust's defaults give *each* partition a 2 GiB block cache and up to 3 × 64 MiB of
    write buffers (8 partitions: the worker grew by 18 KB per lead and would not stop)."""
    share = int(settings.state_memory_mb * 1024 * 1024 * part) // settings.partitions
    return {"block_cache_size": max(share // 2, 1 << 20),
            "block_cache_compressed_size": max(share // 8, 1 << 20),
            "write_buffer_size": max(share // 8, 1 << 20), "max_write_buffer_number": 2}


def state_of(table: Any, settings: Settings) -> RocksState | MemoryState:
    return RocksState(table) if settings.state_store == "rocksdb" else MemoryState(table.data)


def raw_topic(app: faust.App, settings: Settings, *names: str) -> Any:
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=settings.partitions)


def lead_tables(app: faust.App, settings: Settings, model: ScoringModel, producer: FaustProducer
                ) -> tuple[LeadStore, FaustChangelog, FaustChangelog]:
    """The lead table and the histories' table, the store over them and their changelogs
    (written through ``producer``'s batches)."""
    async def on_changelog_event(event: Any) -> None:   # table recovery (runs after start)
        store.recovered(event.key, event.message.partition)

    table = app.Table("lead-state", default=None, partitions=settings.partitions, key_type=str,
                      value_type=bytes, on_changelog_event=on_changelog_event,
                      options=rocksdb_options(settings, 0.75))
    history_table = app.Table("lead-history", default=None, partitions=settings.partitions,
                              key_type=str, value_type=bytes,
                              options=rocksdb_options(settings, 0.25))
    state, histories = state_of(table, settings), state_of(history_table, settings)
    store = LeadStore(state, model, settings.state_cache, histories,
                      settings.state_cache_mb << 20)
    return store, FaustChangelog(table, store.state, producer), FaustChangelog(
        history_table, histories, producer)


def install_pipeline(app: faust.App, settings: Settings, model: ScoringModel, topics: Topics,
                     metrics: Metrics, progress: Progress, positions: Positions) -> None:
    inputs = raw_topic(app, settings, topics.events, topics.feedback, topics.identity)
    hand_out_in_time({topics.identity, topics.feedback})   # small, and what the events wait for

    producer = FaustProducer(app)
    store, changelog, history_log = lead_tables(app, settings, model, producer)
    pipeline = Pipeline(store, settings, model, topics, metrics)
    checkpoint = Checkpoint(settings.flush_max_events, settings.flush_interval)
    inbox = Inbox(app, set(inputs.topics), app.conf.stream_buffer_maxsize)

    async def write(pending: list, records: list, leads: dict) -> None:
        await checkpoint.write(pending, records, leads, producer, changelog, inbox.ack_all,
                               history_log, pipeline.journal)
        store.trim()   # only now: the cache's older leads are in the table

    behind = WriteBehind(checkpoint, pipeline.drain, pipeline.dirty, write)
    commit = behind.commit

    flush_before_wait_empty(app, commit)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
        # write what is pending while the partitions are still ours, then forget their state
        await commit()
        pipeline.forget({tp.partition for tp in revoked if tp.topic == topics.events})

    @app.agent(inputs, name="funnel-pipeline", concurrency=1)
    async def funnel_pipeline(stream: faust.StreamT) -> None:
        inbox.subscribe(stream)   # its messages come through the inbox, in batches
        while True:
            moved: dict[tuple[str, int], int] = {}
            for message in await inbox.take(TAKE_AT_ONCE):
                key = (message.topic, message.partition)
                verdict = positions.admit(key, message.offset)   # no coroutine for a take
                if verdict != TAKE:
                    await refused(app, positions, message, verdict)
                    continue
                checkpoint.taken(message)
                moved[key] = message.offset
                pipeline.apply(Source.of(message))
                if behind.due(settings.flush_max_events):
                    await commit(wait=False)
            progress.taken_all(moved)   # once a partition a batch, not a message

    def assigned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.events}

    @app.timer(settings.flush_interval)
    async def flush_idle_batch() -> None:
        if seeked(app):
            pipeline.resume_all(assigned())   # what a killed worker may not have sent
            pipeline.seed(assigned())   # the table's leads into the timers' schedule, a step
        if behind.busy():
            return   # the agent cuts the batch (``due``), or the next tick
        if checkpoint.expired() or (not checkpoint.pending and pipeline.dirty()):
            await commit(wait=False)

    install_timer_pass(app, settings, pipeline, commit, assigned)


def install_timer_pass(app: faust.App, settings: Settings, pipeline: Pipeline, commit: Any,
                       assigned: Any) -> None:
    """The periodic pass (deadlines, cooling), ``TIMER_STEP`` leads at a time with the agent
    taking messages in between: the whole pass held the event loop for seconds when thousands
    of leads cooled at once."""
    intervals = [i for i in (settings.cooling_interval, settings.timer_interval) if i > 0]
    if not intervals:
        return

    @app.timer(min(intervals))
    async def timer_pass() -> None:
        now, more = datetime.now(timezone.utc), True
        while more and seeked(app):
            changed, more = pipeline.timer_pass(now, assigned(), TIMER_STEP)
            if changed:
                await commit(wait=False)
            elif more:
                await asyncio.sleep(0)


def install_sinks(app: faust.App, settings: Settings, topics: Topics, metrics: Metrics,
                  progress: Progress, positions: Positions) -> None:
    producer = FaustProducer(app)
    writer = Projection(settings.dsn(), settings.db_schema)
    projection = ProjectionSink(topics.leads, writer, ack, settings, metrics,
                                producer.send_acked, topics.dlq,
                                lambda topic, p: highwater(app, topic, p))
    costs = spend_sink(topics.costs, Projection(settings.dsn(), settings.db_schema), ack, settings,
                       producer.send_acked, topics.dlq)
    sinks = (projection, costs)

    for sink, name in zip(sinks, ("funnel-projection", "funnel-costs")):
        def agent(sink: TopicSink = sink) -> Any:
            async def run(stream: faust.StreamT) -> None:
                manual = stream.noack()
                async for event in manual.events():
                    if await admitted(app, positions, event.message):
                        source = Source.of(event.message)
                        progress.taken(source.topic, source.partition, source.offset)
                        sink.add(source, (manual, event))
                        if sink.due():
                            await sink.flush()
            return run
        app.agent(raw_topic(app, settings, sink.topic), name=name, concurrency=1)(agent())

    async def flush_all() -> None:
        """At a stop or a rebalance: what is pending written; a batch whose write failed is
        dropped (read again from the committed offsets) and its messages settled, or Faust
        would wait for their acknowledgement for good."""
        for sink in sinks:
            await sink.flush(wait=False)
            for _, event in sink.drop():
                settle(event.message)

    flush_before_wait_empty(app, flush_all)

    @app.timer(settings.sink_interval)
    async def flush_sinks() -> None:
        for sink in sinks:
            if sink.due():
                await sink.flush()

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
        await flush_all()
