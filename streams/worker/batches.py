"""The worker's records sent a record batch at a time, straight to aiokafka.

A checkpoint writes ~2 records per input event (a lead's state, its history, its snapshot, its
transitions…). Sent one by one through Faust's producer, each cost a coroutine, a future, a task
and Faust's send sensors — ~30 µs a record in the worker's one busy thread. Here a record is
appended to an open aiokafka record batch of its topic partition (the producer's own
compression and size limit) and the batches go out at ``flush``, one future per batch: the
future every record of the batch was given, done when the broker acknowledged the batch (its
result is the batch's ``RecordMetadata``, whose ``offset`` is the batch's first: a record alone in
its batch, like the checkpoint's marks, gets its own offset).

The order of the records of one partition is kept (a full batch goes out before the next one of
that partition). A record without a partition goes where aiokafka's default partitioner puts its
key, as with ``send`` (murmur2, as every Kafka client: a lead's identity messages stay on its
partition).

A topic in ``tails`` (the lead table's changelog) never ends on a batch of many records: its
last record of each partition is held back and sent alone, after its partition's batches. Tansu
reports a partition's end as its *last batch's* base offset + 1, and Faust's recovery both
compares a store's persisted offset with that end and moves it to the last record it read: a
worker that recovered a multi-record last batch would fail its next start (``ConsistencyError``,
persisted offset higher than the highwater). A held record joins its partition's batch when
another one comes after it; its future is that batch's."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any



KEYS_KEPT = 100_000   # keys whose partition is remembered (~10 MB at most)


class BatchSender:
    """``producer``: gives the started ``AIOKafkaProducer`` (Faust's, created at its start)."""

    def __init__(self, producer: Callable[[], Any]) -> None:
        self.producer = producer
        self.open: dict[tuple[str, int], tuple[Any, asyncio.Future]] = {}
        self.full: list[tuple[str, int, Any, asyncio.Future]] = []   # closed, not yet sent
        self.partitions: dict[str, list[int]] = {}
        self.by_key: dict[tuple[str, bytes], int] = {}
        self.tails: set[str] = set()
        self.held: dict[tuple[str, int], tuple[bytes | None, bytes | None, list, asyncio.Future]] \
            = {}

    async def partition_of(self, topic: str, key: bytes | None) -> int:
        """Where aiokafka's default partitioner puts ``key`` (``murmur2``), remembered per key
        — a changed lead's records share its key."""
        if key is not None:
            known = self.by_key.get((topic, key))
            if known is not None:
                return known
        parts = self.partitions.get(topic)
        if parts is None:
            parts = self.partitions[topic] = sorted(await self.producer().partitions_for(topic))
        if key is None:   # a random partition, as aiokafka's default partitioner picks it
            return random.choice(parts)
        partition = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        if len(self.by_key) >= KEYS_KEPT:
            self.by_key.clear()
        self.by_key[(topic, key)] = partition
        return partition

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future:
        """Queue one record; sent at the next ``flush``. Returns its batch's future."""
        if topic not in self.tails:
            return self._append(topic, partition, key, value, headers or [])
        done = asyncio.get_running_loop().create_future()
        before = self.held.get((topic, partition))
        self.held[(topic, partition)] = (key, value, headers or [], done)
        if before is not None:
            self._join(topic, partition, before)
        return done

    def _join(self, topic: str, partition: int, held: tuple) -> None:
        key, value, headers, done = held
        try:
            batch = self._append(topic, partition, key, value, headers)
        except ValueError as exc:
            _fail(done, exc)
        else:
            batch.add_done_callback(lambda f: _settle(done, f))

    def _append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                headers: list) -> asyncio.Future:
        entry = self.open.get((topic, partition))
        if entry is not None:
            if entry[0].append(timestamp=None, key=key, value=value,
                               headers=headers) is not None:
                return entry[1]
            self.full.append((topic, partition, *entry))   # full: goes out first
            del self.open[(topic, partition)]
        builder = self.producer().create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            raise ValueError(f"a record of {len(value or b'')} bytes does not fit a batch")
        done = asyncio.get_running_loop().create_future()
        self.open[(topic, partition)] = (builder, done)
        return done

    def __len__(self) -> int:
        return len(self.full) + len(self.open) + len(self.held)

    async def flush(self) -> None:
        """Every queued batch handed to the producer (not waiting for the broker: await the
        futures ``append`` gave for that). A held record goes last, alone in its batch."""
        batches = self.full + [(t, p, b, d) for (t, p), (b, d) in self.open.items()]
        self.full, self.open = [], {}
        held, self.held = self.held, {}
        for (topic, partition), record in held.items():   # one partition each: a batch each
            self._join(topic, partition, record)
        batches += [(t, p, b, d) for (t, p), (b, d) in self.open.items()]
        self.open = {}
        producer = self.producer()
        for topic, partition, builder, done in batches:
            try:
                sent = await producer.send_batch(builder, topic, partition=partition)
            except Exception as exc:  # noqa: BLE001  (the records' owners see it)
                _fail(done, exc)
                continue
            sent.add_done_callback(lambda f, done=done: _settle(done, f))


def _settle(done: asyncio.Future, sent: asyncio.Future) -> None:
    if done.done():
        return
    if sent.cancelled():
        done.cancel()
    elif sent.exception() is not None:
        done.set_exception(sent.exception())  # type: ignore[arg-type]
    else:
        done.set_result(sent.result())


def _fail(done: asyncio.Future, exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)


M32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of a key (``org.apache.kafka.common.utils.Utils.murmur2``), as every
    Kafka client's default partitioner computes it: aiokafka's is Python (3.4 µs a lead id);
    compiled, the same arithmetic takes a fraction of that. Each product stays below 2**63."""
    m, length = 0x5BD1E995, len(data)
    h = (0x9747B28C ^ length) & M32
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & M32
        k ^= k >> 24
        k = (k * m) & M32
        h = ((h * m) & M32) ^ k
    rest = length % 4
    if rest >= 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & M32
    h ^= h >> 13
    h = (h * m) & M32
    h ^= h >> 15
    return h
