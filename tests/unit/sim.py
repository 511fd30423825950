"""A broker in lists and a worker that can die at any step: the worker's Faust-free parts
(pipeline, checkpoint, store) run as the real worker runs them, on a simulated cluster.

The broker keeps every topic as partitions of ``(key, value, headers)``; a record is durable
once appended. The worker reads its input partitions in an order a seeded ``Random`` picks (so
arrival across partitions and topics is shuffled), decides each message, and checkpoints in
batches of a random size. A ``Fuse`` counts the checkpoint's steps (each send, each changelog
record reaching the broker, each acknowledgement) and blows at a chosen one: the worker is gone
with everything not yet on the broker, as after ``kill -9``. The next worker recovers the tables
from their changelogs (as Faust's memory store does) and goes on from the committed offsets.

Used by ``test_crash_exact``; no Faust, no network: thousands of crashes a second.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from funnel.config import ScoringModel
from streams.records import Record, Source
from streams.settings import Settings
from streams.topics import Topics
from streams.worker.checkpoint import Checkpoint
from streams.worker.pipeline import Pipeline
from streams.worker.store import LeadStore, MemoryState, State

STATE, HISTORY = "lead-state", "lead-history"


class Crash(Exception):
    """The worker was killed here."""


class Fuse:
    """Counts steps; raises :class:`Crash` at step ``at`` (never when ``at`` is None)."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.steps = at, 0

    def step(self) -> None:
        self.steps += 1
        if self.at is not None and self.steps >= self.at:
            raise Crash(f"killed at step {self.steps}")


@dataclass
class Broker:
    partitions: int
    logs: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, tuple]]] = field(
        default_factory=lambda: defaultdict(list))
    stamps: dict[tuple[str, int], list[int]] = field(   # each record's timestamp: when it came
        default_factory=lambda: defaultdict(list))
    appended: int = 0   # records appended so far: the next one's timestamp

    def partition_of(self, key: bytes | None) -> int:
        return zlib.crc32(key) % self.partitions if key else 0

    def append(self, topic: str, key: bytes | None, value: bytes | None,
               headers: tuple = (), partition: int | None = None) -> None:
        p = self.partition_of(key) if partition is None else partition
        self.logs[(topic, p)].append((key, value, tuple(headers)))
        self.stamps[(topic, p)].append(self.appended)
        self.appended += 1

    def records(self, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
        """Every record of ``topic``: (partition, key, value), partition by partition."""
        return [(p, k, v) for p in range(self.partitions) for k, v, _ in self.logs[(topic, p)]]

    def table(self, topic: str) -> dict[str, bytes]:
        """A changelog read from the start: the latest value of each key (Faust's recovery)."""
        out: dict[str, bytes] = {}
        for _, key, value in self.records(topic):
            out[key.decode()] = value   # type: ignore[union-attr]
        return out


class SimProducer:
    """Every send reaches the broker at once (acknowledged) unless the fuse blows first."""

    def __init__(self, broker: Broker, fuse: Fuse) -> None:
        self.broker, self.fuse = broker, fuse

    async def send(self, record: Record) -> Any:
        self.fuse.step()
        self.broker.append(record.topic, record.key, record.value, tuple(record.headers))
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def flush(self) -> None:
        return None


class SimChangelog:
    """A table's changelog: ``write`` stores locally and queues; the queue reaches the broker
    record by record at the producer's next flush (the fuse may blow between two records)."""

    def __init__(self, broker: Broker, topic: str, local: State, fuse: Fuse,
                 producer: SimProducer) -> None:
        self.broker, self.topic, self.local, self.fuse = broker, topic, local, fuse
        self.queued: list[tuple[int, str, bytes]] = []
        original = producer.flush

        async def flush() -> None:
            await original()
            while self.queued:
                p, key, value = self.queued.pop(0)
                self.fuse.step()
                self.broker.append(self.topic, key.encode(), value, (), p)
        producer.flush = flush   # type: ignore[method-assign]

    def write(self, partition: int, key: str, value: bytes) -> None:
        self.local.put(partition, key, value)
        self.queued.append((partition, key, value))

    def write_all(self, items: list[tuple[int, str, bytes]]) -> list[None]:
        return [self.write(*item) for item in items]

    mark = write


class Cluster:
    """The broker and the committed offsets: what outlives a worker."""

    def __init__(self, partitions: int, model: ScoringModel, settings: Settings) -> None:
        self.broker = Broker(partitions)
        self.model, self.settings = model, settings
        self.topics = Topics.from_settings(settings)
        self.committed: dict[tuple[str, int], int] = {}
        self.inputs = (self.topics.events, self.topics.feedback, self.topics.identity)

    def publish(self, topic: str, key: str | None, value: bytes) -> None:
        self.broker.append(topic, key.encode() if key else None, value)

    def backlog(self, topics: tuple[str, ...], positions: dict[tuple[str, int], int]
                ) -> list[tuple[str, int]]:
        return [(t, p) for t in topics for p in range(self.broker.partitions)
                if positions.get((t, p), 0) < len(self.broker.logs[(t, p)])]

    def first_in_time(self, ready: list[tuple[str, int]], positions: dict[tuple[str, int], int]
                      ) -> tuple[str, int]:
        own = [tp for tp in ready if tp[0] == self.topics.identity]
        return own[0] if own else min(
            ready, key=lambda tp: self.broker.stamps[tp][positions.get(tp, 0)])

    def run_worker(self, rnd: random.Random, fuse: Fuse, cache_size: int,
                   max_batch: int, in_time: bool = False) -> None:
        """One worker from recovery until every input is decided and written (or the fuse
        blows). Feedback (sales commands) is read once the events are: a command is decided
        against the lead as it stands when it arrives, as a sales rep's click is. The partitions
        are read in a random order, or ``in_time`` as the worker reads them
        (``streams.worker.fetch_order``): the identity messages first, then the record that came
        first."""
        state = MemoryState(self.broker.table(STATE))
        histories = MemoryState(self.broker.table(HISTORY))
        store = LeadStore(state, self.model, cache_size, histories,
                          self.settings.state_cache_mb << 20)
        pipeline = Pipeline(store, self.settings, self.model, self.topics)
        producer = SimProducer(self.broker, fuse)
        changelog = SimChangelog(self.broker, STATE, store.state, fuse, producer)
        history_log = SimChangelog(self.broker, HISTORY, histories, fuse, producer)
        checkpoint = Checkpoint(max_events=rnd.randint(1, max_batch), max_seconds=1e9)
        positions = dict(self.committed)

        async def ack(tokens: list[tuple[str, int, int]]) -> None:
            for topic, p, offset in tokens:
                fuse.step()   # a crash may come between two of a batch's acknowledgements
                self.committed[(topic, p)] = max(self.committed.get((topic, p), 0), offset + 1)

        async def commit() -> None:
            records, leads = pipeline.drain()
            await checkpoint.write(checkpoint.cut(), records, leads, producer, changelog, ack,
                                   history_log, pipeline.journal)
            store.trim()

        async def run() -> None:
            while True:
                ready = (self.backlog((self.topics.events, self.topics.identity), positions)
                         or self.backlog((self.topics.feedback,), positions))
                if not ready:
                    if not pipeline.dirty() and not checkpoint.pending:
                        return
                    await commit()
                    continue
                topic, p = self.first_in_time(ready, positions) if in_time else rnd.choice(ready)
                offset = positions.get((topic, p), 0)
                key, value, headers = self.broker.logs[(topic, p)][offset]
                positions[(topic, p)] = offset + 1
                pipeline.apply(Source(topic, p, offset, key, value, headers))
                checkpoint.taken((topic, p, offset))
                if checkpoint.expired():
                    await commit()
        asyncio.run(run())

    def run(self, rnd: random.Random, crashes: int, cache_size: int = 2000, max_batch: int = 30,
            crash_within: int = 200) -> int:
        """Workers one after the other until the stream is done; ``crashes`` of them are
        killed at a random step. Returns how many were killed."""
        killed = 0
        while True:
            fuse = Fuse(rnd.randint(1, crash_within) if killed < crashes else None)
            try:
                self.run_worker(rnd, fuse, cache_size, max_batch)
                return killed
            except Crash:
                killed += 1
