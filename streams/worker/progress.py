"""Is the worker moving? Per consumed partition: the last offset taken and when it moved.

A partition is *stalled* when it has messages past the last one taken (its end, from the
consumer's high watermark) and nothing was taken from it for ``stall_seconds``. ``/healthz``
answers 503 naming the stalled partitions, so that an orchestrator restarts a worker whose
partition stopped while the process looks alive. Faust-free: ends are passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

TP = tuple[str, int]


class Progress:
    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds, self.clock = stall_seconds, clock
        self.next: dict[TP, int] = {}         # next offset expected (last taken + 1)
        self.moved: dict[TP, float] = {}      # when it last moved, or was first seen behind
        self.reread: dict[TP, float] = {}     # when it was last sought back (``stuck``)

    def taken(self, topic: str, partition: int, offset: int) -> None:
        tp = (topic, partition)
        if offset + 1 > self.next.get(tp, 0):
            self.next[tp] = offset + 1
            self.moved[tp] = self.clock()

    def taken_all(self, last: dict[TP, int]) -> None:
        """``taken`` of the last offset of each partition in ``last`` (a batch's): once a
        partition, not once a message."""
        for (topic, partition), offset in last.items():
            self.taken(topic, partition, offset)

    def _behind(self, ends: dict[TP, int | None], starts: dict[TP, int]
                ) -> Iterator[tuple[TP, int, int, float]]:
        """(partition, where to read it from, how far behind, seconds without progress) for
        each partition behind its end. Where to read from: the last taken + 1, or ``starts``
        when further (the first offset not taken since the consumer's seek,
        ``Positions.expected``: a partition taken over from another worker starts at the
        group's committed offset)."""
        now = self.clock()
        for tp, end in sorted(ends.items()):
            start = max(self.next.get(tp, 0), starts.get(tp, 0))
            behind = (end or 0) - start
            if behind <= 0:
                self.moved[tp] = now    # caught up: the clock starts when it falls behind
                continue
            yield tp, start, behind, now - self.moved.setdefault(tp, now)

    def stalled(self, ends: dict[TP, int | None],
                starts: dict[TP, int] | None = None) -> list[str]:
        """The partitions behind their end with no progress for ``stall_seconds``."""
        return [f"{tp[0]}[{tp[1]}]: {behind} behind, nothing taken for {idle:.0f}s"
                for tp, _, behind, idle in self._behind(ends, starts or {})
                if idle >= self.stall_seconds]

    def stuck(self, ends: dict[TP, int | None], starts: dict[TP, int],
              after: float) -> list[tuple[TP, int]]:
        """The partitions behind their end with no progress for ``after`` seconds, each with
        the offset to read it again from; a partition at most once every ``after`` seconds.
        The worker seeks them back (``faust_glue.reread_stuck``): records Faust dropped with
        nothing after them to show the hole (``streams.worker.positions``)."""
        now, out = self.clock(), []
        for tp, start, _, idle in self._behind(ends, starts):
            if idle >= after and now - self.reread.get(tp, -after) >= after:
                self.reread[tp] = now
                out.append((tp, start))
        return out
