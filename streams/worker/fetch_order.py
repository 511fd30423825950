"""The order fetched records are handed out in: the worker's own topics first, then the events
of all partitions in the order they were produced (the records' timestamps), as Kafka Streams
synchronises a task's partitions.

aiokafka hands fetched records out partition by partition, each until its fetched records are
all out, and Faust then goes round the partitions one record each. A lead's anonymous id and its
known id are on different partitions: when one partition was read ahead of the other, the link
came before the anonymous id's last events, and each such event became a *forward* — a replay
of the whole known lead's history (~250 µs each on the simulated cluster, against ~25 µs to
decide an event), and a snapshot more for the projection. In time order the anonymous id's events are decided
before the link and come over in its one absorb. Nothing else depends on it: the answers are
the same in any order the partitions are read in (the merges are order-free, and the crash and
differential tests read them in random orders); a partition's own order is always kept.

The records are drained from the fetched partitions ``SLICE`` at a time, the partition handed
out least far in time first (``arrange``), and the records of one poll are merged by timestamp
(``in_time``, Faust's consumer scheduler). A partition passed over for ``FAIR_SECONDS`` while
it had records waiting is served first: a partition far behind in time (a producer's backlog)
does not stop the others, whose waiting records would otherwise be dropped and read again as
stuck. Runs in the consumer's thread, as the methods it wraps.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator, Mapping
from typing import Any

from aiokafka.consumer.fetcher import Fetcher, FetchResult

SLICE = 50            # records a partition gives at a time
FAIR_SECONDS = 2.0    # the longest a partition with fetched records is passed over
FIRST_TOPICS: set[str] = set()   # handed out before the events (``hand_out_in_time``)
NEVER = float("-inf")


class Turns:
    """Where each partition stands in time: the timestamp of its last record handed out, and
    since when one with fetched records has been passed over."""

    def __init__(self) -> None:
        self.last: dict[Any, float] = {}
        self.passed_over: dict[Any, float] = {}

    def arrange(self, records: Any, first: set[str], now: float) -> None:
        """Reorder ``records`` (aiokafka's ``OrderedDict`` of fetched results by topic
        partition) for the next drain: errors first (raised as aiokafka raises them), then the
        partitions of ``first`` in their order, then the others, the one handed out least far
        in time first (one never handed out, or passed over too long, before all)."""
        def rank(tp: Any) -> tuple[int, float]:
            if type(records[tp]) is not FetchResult:
                return 0, 0.0
            if tp.topic in first:
                return 1, 0.0
            since = self.passed_over.setdefault(tp, now)
            if now - since > FAIR_SECONDS:
                return 2, since
            return 3, self.last.get(tp, NEVER)

        order = sorted(records, key=rank)   # stable: ties keep their order
        for tp in order:
            records.move_to_end(tp)

    def served(self, drained: Mapping[Any, list]) -> None:
        for tp, got in drained.items():
            if got:
                self.last[tp] = got[-1].timestamp or 0
                self.passed_over.pop(tp, None)


def hand_out_in_time(first: frozenset[str] | set[str] = frozenset()) -> None:
    """Fetched records handed out in time order, those of the topics ``first`` first (the
    pipeline adds its own: the identity messages the worker sends itself waited behind every
    events batch fetched before them — a 19 s tail after the last event in one bench run; every
    worker process calls this, with none at least).

    Tansu 0.6 ignores the per-partition fetch limit and fills a fetch up to aiokafka's 50 MiB:
    on a topic of 100,000 simulated leads one partition's fetch held ~75,000 events, handed out
    alone for ~35 s while the other partitions, fetched and waiting, had nothing taken and were
    read again every ``FUNNEL_REREAD_SECONDS`` (50 re-reads in one bench run). Drained a slice at
    a time, least far in time first, each partition's fetched records wait at most until the
    others have caught up with them (``FAIR_SECONDS``)."""
    FIRST_TOPICS.update(first)
    if getattr(Fetcher.fetched_records, "_funnel", False):
        return
    original = Fetcher.fetched_records

    async def fetched_records(self: Any, partitions: Any, timeout: float = 0,
                              max_records: int | None = None) -> Any:
        turns = getattr(self, "_funnel_turns", None)
        if turns is None:
            turns = self._funnel_turns = Turns()
        budget = max_records if max_records is not None else 1 << 30
        turns.arrange(self._records, FIRST_TOPICS, time.monotonic())
        drained = await original(self, partitions, timeout, min(budget, SLICE))
        turns.served(drained)
        got = sum(map(len, drained.values()))
        # more slices while there is room; no await in between (``timeout`` 0), so no fetch
        # lands and no error appears meanwhile: an error present was raised by the first call
        while got < budget and drained and not self._subscriptions.reassignment_in_progress:
            turns.arrange(self._records, FIRST_TOPICS, time.monotonic())
            more = await original(self, partitions, 0, min(budget - got, SLICE))
            if not more:
                break
            turns.served(more)
            for tp, records in more.items():
                drained.setdefault(tp, []).extend(records)
                got += len(records)
        return drained

    fetched_records._funnel = True  # type: ignore[attr-defined]
    Fetcher.fetched_records = fetched_records  # type: ignore[method-assign]


class InTime:
    """Faust's consumer scheduler (``ConsumerScheduler``): one poll's records handed out the
    partitions of ``FIRST_TOPICS`` first, then the others merged by timestamp (ties: the
    partition listed first), each partition's in its order."""

    def iterate(self, records: Mapping[Any, list]) -> Iterator[tuple[Any, Any]]:
        return in_time(records, FIRST_TOPICS)


def in_time(records: Mapping[Any, list], first: set[str]) -> Iterator[tuple[Any, Any]]:
    for tp, got in records.items():
        if tp.topic in first:
            for record in got:
                yield tp, record
    others = [[(tp, record) for record in got] for tp, got in records.items()
              if tp.topic not in first]
    if len(others) == 1:
        yield from others[0]
    elif others:
        yield from heapq.merge(*others, key=lambda pair: pair[1].timestamp or 0)
