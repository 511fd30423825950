"""Between Faust and the Faust-free worker: adapters for the producer, the table's changelog
and acknowledgements, and the work-arounds for faust-streaming (0.15) with aiokafka and Tansu,
each with the failure it prevents. Kept apart so that the wiring reads as wiring."""

from __future__ import annotations

import logging
from typing import Any

from streams.records import Record
from streams.worker.batches import BatchSender
from streams.worker.positions import SEEK, TAKE, Positions

log = logging.getLogger("funnel.worker")


def seek_before_resume() -> None:
    """Work around two start-up hazards of faust-streaming (0.15) with aiokafka.

    A stream partition with no committed offset (or offset 0: aiokafka does not seek to 0) is
    started by the reset policy; on Tansu 0.6 that put a restarted worker at the *end* of the
    identity partitions, whose first offsets had not been committed yet, and every link and
    absorb message before it was skipped (the crash test caught it). Such partitions are sought
    to offset 0 explicitly. What recovery fetches before the seek is not taken (``seeked``).

    The partitions are *not* paused around the seek: Faust's fetch loop drops the records of a
    partition paused while they were in flight, after the consumer's position has moved past
    them, so a pause here stopped a partition for good (two workers, one killed: the chaos runs).
    """
    from faust.transport.consumer import Consumer

    if getattr(Consumer.perform_seek, "_funnel", False):
        return
    original = Consumer.perform_seek

    async def perform_seek(self: Consumer) -> None:
        await original(self)
        streams = {tp for tp in self.assignment() if not self._is_changelog_tp(tp)}
        positions = getattr(self.app, "funnel_positions", None)
        if positions is not None:   # before any await: what comes next is from the seek
            positions.sought({(tp.topic, tp.partition): self._read_offset.get(tp) or 0
                              for tp in streams})
        for tp in streams:
            if not self._read_offset.get(tp):   # None or 0: from the beginning
                await self.seek(tp, 0)

    perform_seek._funnel = True  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def seek_in_place() -> None:
    """Faust seeks from the main thread (``Consumer._seek`` calls the consumer thread's
    ``seek`` directly), and aiokafka's ``Fetcher.seek_to`` then deletes the partition's fetched
    records from a dict the consumer thread may be walking: its own ``del`` of the same entry
    raised ``KeyError`` and ended the worker ("Drain messages raised: KeyError(TopicPartition
    …)", the chaos test, right after a restart's seek, more often with small fetches). Here the
    seek only moves the position; a fetch result from before it sees the new position and drops
    itself in the consumer's own thread (``FetchResult.check_assignment``)."""
    from aiokafka.consumer.fetcher import Fetcher

    if getattr(Fetcher.seek_to, "_funnel", False):
        return

    def seek_to(self: Any, tp: Any, offset: int) -> None:
        self._subscriptions.seek(tp, offset)
        self._notify(self._wait_consume_future)

    seek_to._funnel = True  # type: ignore[attr-defined]
    Fetcher.seek_to = seek_to  # type: ignore[method-assign]


FETCH_WAIT = [1.5]   # ``fetch_wait``: seconds (Faust's aiokafka consumer waits 1.5)


def fetch_wait(seconds: float) -> None:
    """The longest a fetch of the app's consumer waits for records to come (aiokafka's
    ``fetch_max_wait_ms``; Faust sets 1.5 s and no setting). Kafka answers a waiting fetch as
    soon as a record arrives; Tansu 0.6, the embedded broker, only when the wait is over (a
    record produced to an empty partition came 0.15–0.52 s later with 1.5 s, 5–14 ms with
    0.05 s): each hop of an identity merge (the worker's own topic) waited that long."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    FETCH_WAIT[0] = seconds
    if getattr(AIOKafkaConsumerThread._create_worker_consumer, "_funnel", False):
        return
    original = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = int(FETCH_WAIT[0] * 1000)   # read by ``start()``
        return consumer

    _create_worker_consumer._funnel = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore


def flush_before_wait_empty(app: Any, flush: Any) -> None:
    """Run ``flush`` (write what is pending, so its messages are acknowledged) before Faust
    waits for every message it handed out to be acknowledged — at a rebalance and at a stop.
    At a stop Faust's timers no longer run, so a sink's batch waited for a flush that never
    came: the process never stopped (a projection process told to stop by SIGTERM kept its
    partitions, alive and idle, for good)."""
    original = app._consumer_wait_empty

    async def wait_empty(consumer: Any, logger: Any) -> None:
        try:
            await flush()
        except Exception:  # noqa: BLE001  (what was not written is read again)
            log.exception("writing what was pending before the wait failed")
        await original(consumer, logger)

    app._consumer_wait_empty = wait_empty


def seeked(app: Any) -> bool:
    """Whether Faust has recovered the tables and sought the stream partitions to their
    committed offsets in this generation: the timers decide nothing before (a partition taken
    over was resumed from a table not yet recovered: its journal was never re-sent). Faust sets
    ``completed`` once and never clears it, hence ``rebalancing`` too. Messages are gated by
    ``Positions`` (``admitted``)."""
    return app.tables.recovery.completed.is_set() and not app.rebalancing


def watch_positions(app: Any, positions: Positions) -> None:
    """``positions`` cleared when a rebalance starts, set by the seek (``seek_before_resume``)."""
    app.funnel_positions = positions
    start = app.on_rebalance_start

    def on_rebalance_start() -> None:
        positions.clear()
        start()

    app.on_rebalance_start = on_rebalance_start


async def admitted(app: Any, positions: Positions, message: Any) -> bool:
    """Whether an agent takes ``message`` (``Positions.admit``); seeks its partition back to
    the first offset not taken when messages went missing."""
    verdict = positions.admit((message.topic, message.partition), message.offset)
    if verdict != TAKE:
        await refused(app, positions, message, verdict)
    return verdict == TAKE


async def refused(app: Any, positions: Positions, message: Any, verdict: str) -> None:
    """``message`` is not taken (``verdict``: ``SKIP`` or ``SEEK``): settled, and on ``SEEK``
    its partition sought back to the first offset not taken."""
    key = (message.topic, message.partition)
    if verdict == SEEK:
        log.warning("%s[%s]: offset %s came, %s expected: reading it again from there",
                    key[0], key[1], message.offset, positions.expected[key])
        try:
            await seek_back(app.consumer, message.tp, positions.expected[key])
        except Exception:  # noqa: BLE001  (revoked meanwhile: the next seek sets it)
            log.exception("seeking %s back failed", key)
    settle(message)


def settle(message: Any) -> None:
    """A message handed to an agent and not taken is settled without acknowledging its offset.
    Faust waits, before a rebalance (or a stop) can finish, for every message it handed out to
    be acknowledged or garbage (a weak set); a skipped one, still held by the agent's loop
    variable while it waits for the next message, was neither: the rebalance never ended and
    both workers stopped for good (two workers, one killed: the chaos runs). Acknowledging it
    instead would mark its offset done, and Faust could commit past a message not yet written."""
    message.acked = True


async def seek_back(consumer: Any, tp: Any, offset: int) -> None:
    """Read ``tp`` again from ``offset``; the offsets Faust saw skipped there are forgotten,
    so that none of them is counted as done (Faust fills such "gaps" into its commit)."""
    consumer._gap.pop(tp, None)
    await consumer.seek(tp, offset)


def highwater(app: Any, topic: str, partition: int) -> int | None:
    """The partition's end as this worker's consumer knows it; None when it is not (or no
    longer) assigned here. aiokafka asserts on a partition not assigned: a sink's flush after a
    rebalance asked for one and its AssertionError ended the worker (two workers, one killed)."""
    from faust.types import TP

    tp = TP(topic, partition)
    return app.consumer.highwater(tp) if tp in app.consumer.assignment() else None


async def reread_stuck(app: Any, progress: Any, positions: Positions, topics: set[str],
                       after: float) -> int:
    """Seek back each partition of ``topics`` that is behind its end with nothing taken for
    ``after`` seconds (``Progress.stuck``): to the next offset not taken. Returns how many."""
    consumer = app.consumer
    tps = {(tp.topic, tp.partition): tp for tp in consumer.assignment() if tp.topic in topics}
    ends = {key: consumer.highwater(tp) for key, tp in tps.items()}
    stuck = progress.stuck(ends, positions.expected, after)
    for key, offset in stuck:
        log.warning("%s[%s]: %s behind its end and nothing taken for %.0fs: reading it again "
                    "from offset %s", key[0], key[1], (ends[key] or 0) - offset, after, offset)
        await seek_back(consumer, tps[key], offset)
    return len(stuck)


async def ack(token: tuple[Any, Any]) -> None:
    stream, event = token
    await stream.ack(event)


class FaustProducer:
    """Records into record batches of Faust's aiokafka producer (``streams.worker.batches``),
    sent at ``flush``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.batches = BatchSender(lambda: app.producer._ensure_producer())

    async def send(self, r: Record) -> Any:
        partition = await self.batches.partition_of(r.topic, r.key)
        return self.batches.append(r.topic, partition, r.key, r.value, r.headers)

    async def flush(self) -> None:
        await self.batches.flush()

    async def send_acked(self, r: Record) -> None:
        """Send ``r`` and wait until the broker acknowledged it."""
        sent = await self.send(r)
        await self.flush()
        await sent
