"""The write-behind commit protocol: journal → state → outputs → sent mark → offsets. One
``Checkpoint`` per batch of input messages.

Each message is decided at once, in memory; its effects are written here, in batches, each step
acknowledged by the broker before the next one starts:

1. **Histories**: the message history of each changed lead whose history grew, to the
   history table's changelog. Ahead of the state is harmless (a message decided again is a
   duplicate there); behind it would lose messages from a later identity merge. A history
   emptied (an id merged into another handed it over) is written after the state (step 3): if
   it were gone before, the id's earlier state could hand over nothing after a crash.
2. **Journal** (``streams.worker.journal``): per changelog partition, the batch's number, its
   changed leads and the records each change caused (transitions, handoffs, alerts, identity
   messages).
3. **State**: one changelog record per changed lead (its latest state, carrying the batch's
   number), then the end marker: every changelog partition just written gets one more record
   batch of one record, under a key no lead has (``MARKER_KEY``), written once the states are
   acknowledged. Some Kafka-compatible brokers (Tansu 0.6) report the end of a partition as the
   base offset of its *last batch* + 1, and Faust's recovery stops there: without the marker,
   the other records of a last multi-record batch would be skipped at the next start. Only the
   markers (and the sent marks) move the table's persisted offset (``Changelog.mark``).
4. **Outputs**: every record of the batch (the journaled ones, a snapshot per changed lead, dead
   letters, re-keyed and forwarded messages).
5. **Sent mark**: the batch's number per partition (``journal.sent``).
6. **Offsets**: the batch's input messages are acknowledged (``ack``, all of them in one call), so
   Faust may commit their offsets.
   Last, because a committed offset is a promise that everything above is durable.

Why this order: a lead's new state is on record before anything that tells of it goes out, so
a version seen outside is never lost (no lead's version goes backwards after a crash), and what
it sent is on record with it: after a crash between 3 and 5 the journal's records are sent again
*unchanged* (same ids) instead of being decided again — which, with messages from several topics
read in another order after the restart, could give the same move under another version. A
crash before 3 loses nothing either: no output of the batch went out, and its messages are read
again and decided as if for the first time.

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
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from funnel.model import Lead
from streams.records import Record
from streams.worker.journal import Journal
from streams.worker.store import MemoryState, encode

MARKER_KEY = "\x00funnel-batch-end"   # no lead has this id (ids are at most 256 printable chars)
MARKER_VALUE = b"{}"


class Producer(Protocol):
    async def send(self, record: Record) -> Awaitable[Any]:
        """Queue ``record``; the awaitable completes when the broker acknowledged it."""

    async def flush(self) -> None: ...


class Changelog(Protocol):
    def write(self, partition: int, key: str, value: bytes) -> Awaitable[Any] | None:
        """Store ``value`` as ``key``'s state and queue its changelog record; the awaitable
        (if any) completes when the broker acknowledged the record."""

    def write_all(self, items: list[tuple[int, str, bytes]]) -> list[Awaitable[Any] | None]:
        """``write`` each (partition, key, value); the store may take them in one write a
        partition."""

    def mark(self, partition: int, key: str, value: bytes) -> Awaitable[Any] | None:
        """``write`` a mark: written once every record before it is acknowledged (so it is
        alone in its record batch); once acknowledged, recovery may start after it."""


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
                     ack: Callable[[list[Any]], Awaitable[None]],
                     histories: Changelog | None = None, journal: Journal | None = None) -> None:
        await self.write(self.cut(), outputs, state, producer, changelog, ack, histories,
                         journal)

    async def write(self, pending: list[Any], outputs: Iterable[Record],
                    state: dict[str, tuple[int, Lead]], producer: Producer, changelog: Changelog,
                    ack: Callable[[list[Any]], Awaitable[None]], histories: Changelog | None = None,
                    journal: Journal | None = None) -> None:
        """Steps 1–6 for one batch cut before (``cut``): its inputs, outputs and states (and
        the leads' histories, to ``histories``); ``journal`` numbers the batches."""
        outputs = list(outputs)
        numbers: dict[int, int] = {}
        if state:
            journal = journal or Journal(MemoryState({}))
            if histories is not None:
                await _histories(state, histories, producer, grown=True)  # 1
            caused: dict[str, list[Record]] = defaultdict(list)
            for r in outputs:
                if r.lead is not None and r.lead in state:
                    caused[r.lead].append(r)
            leads: dict[int, dict[str, list[Record]]] = defaultdict(dict)
            for lead_id, (partition, _) in state.items():
                leads[partition][lead_id] = caused.get(lead_id, [])
            numbers = {p: journal.number(p) for p in sorted(leads)}
            await _acked(producer, changelog.write_all([(p, key, value)           # 2
                                    for p in numbers
                                    for key, value in journal.entries(p, numbers[p], leads[p])]))
            await _acked(producer, changelog.write_all([                      # 3
                (p, lead_id, encode(lead, numbers[p])) for lead_id, (p, lead) in state.items()]))
            await _acked(producer, [changelog.mark(p, MARKER_KEY, MARKER_VALUE) for p in numbers])
            if histories is not None:
                await _histories(state, histories, producer, grown=False)
        await _acked(producer, [await producer.send(record) for record in outputs])   # 4
        if numbers:
            assert journal is not None
            await _acked(producer, [changelog.mark(p, *journal.sent(p, n))  # 5
                                    for p, n in numbers.items()])
        await ack(pending)                                                # 6


async def _acked(producer: Producer, acks: list[Awaitable[Any] | None]) -> None:
    """Until the broker acknowledged every record just queued."""
    await producer.flush()
    await asyncio.gather(*(a for a in acks if a is not None))


async def _histories(state: dict[str, tuple[int, Lead]], histories: Changelog,
                     producer: Producer, grown: bool) -> None:
    """The histories that changed and grew (``grown``), or were emptied, and the end marker on
    their partitions."""
    changed = [(p, lead) for p, lead in state.values()
               if not lead.history.stored and bool(lead.history.blob) == grown]
    if not changed:
        return
    await _acked(producer, histories.write_all([(p, lead.lead_id, lead.history.encode())
                                                for p, lead in changed]))
    await _acked(producer, [histories.mark(p, MARKER_KEY, MARKER_VALUE)
                            for p in sorted({p for p, _ in changed})])
    for _, lead in changed:
        lead.history.stored = True


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

    def busy(self) -> bool:
        """A batch is being written."""
        return self.writing is not None and not self.writing.done()

    def due(self, max_events: int) -> bool:
        """Whether to cut the batch now: it is due (``Checkpoint.expired``) and the batch
        before is written, or it holds ``max_events`` messages already. So a batch grows while
        the one before is written (group commit): the broker's round trips are paid per batch,
        and a slow write makes the next batch larger instead of stopping the agent."""
        return self.checkpoint.expired() and (not self.busy()
                                              or len(self.checkpoint) >= max_events)

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
