"""The write-behind commit protocol: outputs acknowledged → state in the changelog → end marker
→ offsets. One ``Checkpoint`` per batch of input messages.

Each message is decided at once, in memory; its effects are written here, in batches:

1. **Outputs** (handoffs, transitions, alerts, snapshots, dead letters, identity messages,
   re-keyed messages) are sent and *every send is acknowledged* by the broker. A crash before
   this step ends loses nothing: the inputs are not acknowledged yet and will be read again,
   and deduplication by ``messageId``/``command_id`` plus handoff ids ``lead_id:version`` make
   the repeat harmless.
2. **State**: one changelog record per lead changed in the batch (the latest state only), its
   message history to the history table's changelog when that changed, and the producer
   flushed. Written after the outputs, so that a restart that recovers this state
   never finds its outputs missing.
3. **End marker**: every changelog partition just written gets one more record batch of one
   record, under a key no lead has (``MARKER_KEY``). Some Kafka-compatible brokers (Tansu 0.6)
   report the end of a partition as the base offset of its *last batch* + 1, and Faust's
   recovery stops there: without the marker, the other records of a last multi-record batch
   would be skipped at the next start.
4. **Offsets**: the batch's input messages are acknowledged, so Faust may commit their offsets.
   Last, because a committed offset is a promise that everything above is durable.

A batch is cut (``cut``) and drained at once; its writing may then go on while the next batch
is decided (the wiring lets one batch be written at a time, in order: a batch's steps start only
after the one before has acknowledged its inputs).

``expired()`` says when a batch is due: ``max_events`` messages or ``max_seconds`` since its
first message. Faust's ``take_events`` is not used: it can acknowledge a message that arrives
while a batch is being acknowledged without ever yielding it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from funnel.model import Lead
from streams.records import Record
from streams.worker.store import encode

MARKER_KEY = "\x00funnel-batch-end"   # no lead has this id (ids are at most 256 printable chars)
MARKER_VALUE = b"{}"


class Producer(Protocol):
    async def send(self, record: Record) -> Awaitable[Any]:
        """Queue ``record``; the awaitable completes when the broker acknowledged it."""

    async def flush(self) -> None: ...


class Changelog(Protocol):
    def write(self, partition: int, key: str, value: bytes) -> None:
        """Store ``value`` as ``key``'s state and queue its changelog record."""


class Checkpoint:
    def __init__(self, max_events: int, max_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_events, self.max_seconds, self.clock = max_events, max_seconds, clock
        self.pending: list[Any] = []      # input messages taken, not yet acknowledged
        self.started = clock()

    def __len__(self) -> int:
        return len(self.pending)

    def taken(self, message: Any) -> None:
        """``message`` was decided; it is acknowledged at the next commit."""
        if not self.pending:
            self.started = self.clock()
        self.pending.append(message)

    def expired(self) -> bool:
        return bool(self.pending) and (len(self.pending) >= self.max_events
                                       or self.clock() - self.started >= self.max_seconds)

    def cut(self) -> list[Any]:
        """The batch's input messages, taken out: the next batch starts empty."""
        pending, self.pending = self.pending, []
        return pending

    async def commit(self, outputs: Iterable[Record], state: dict[str, tuple[int, Lead]],
                     producer: Producer, changelog: Changelog,
                     ack: Callable[[Any], Awaitable[None]], histories: Changelog | None = None
                     ) -> None:
        await self.write(self.cut(), outputs, state, producer, changelog, ack, histories)

    async def write(self, pending: list[Any], outputs: Iterable[Record],
                    state: dict[str, tuple[int, Lead]], producer: Producer, changelog: Changelog,
                    ack: Callable[[Any], Awaitable[None]], histories: Changelog | None = None
                    ) -> None:
        """Steps 1–4 for one batch cut before (``cut``): its inputs, outputs and states (and
        the leads' histories, to ``histories``)."""
        # 1. outputs, each acknowledged by the broker
        acks = [await producer.send(record) for record in outputs]
        await producer.flush()
        await asyncio.gather(*acks)
        if state:
            # 2. one changelog record per changed lead, and its history when that changed
            #    (written to its own table: the lead's record stays small)
            written = []
            for lead_id, (partition, lead) in state.items():
                changelog.write(partition, lead_id, encode(lead))
                if histories is not None and not lead.history.stored:
                    histories.write(partition, lead_id, lead.history.encode())
                    written.append(lead.history)
            await producer.flush()
            for history in written:
                history.stored = True
            # 3. the end marker on every changelog partition written
            for partition in sorted({p for p, _ in state.values()}):
                changelog.write(partition, MARKER_KEY, MARKER_VALUE)
                if histories is not None:
                    histories.write(partition, MARKER_KEY, MARKER_VALUE)
            await producer.flush()
        # 4. the inputs' offsets
        for message in pending:
            await ack(message)


class WriteBehind:
    """Cut the batch and write it behind: one batch is written at a time, in order, while the
    agent decides the next one. ``drain`` gives a batch's records and changed leads, ``dirty``
    whether there is anything to drain, ``write`` writes one cut batch (steps 1–4)."""

    def __init__(self, checkpoint: Checkpoint,
                 drain: Callable[[], tuple[list[Record], dict[str, tuple[int, Lead]]]],
                 dirty: Callable[[], bool],
                 write: Callable[[list[Any], list[Record], dict[str, tuple[int, Lead]]],
                                 Awaitable[None]]) -> None:
        self.checkpoint, self.drain, self.dirty, self.write = checkpoint, drain, dirty, write
        self.lock = asyncio.Lock()
        self.writing: asyncio.Future | None = None   # the batch being written, if any

    async def commit(self, wait: bool = True) -> None:
        """Cut and drain now, write behind; ``wait``: until it is written."""
        async with self.lock:
            await self._written()   # the batch before first (its failure surfaces here)
            if self.checkpoint.pending or self.dirty():
                pending = self.checkpoint.cut()
                records, leads = self.drain()
                self.writing = asyncio.ensure_future(self.write(pending, records, leads))
            if wait:
                await self._written()

    async def _written(self) -> None:
        writing, self.writing = self.writing, None
        if writing is not None:
            await writing
