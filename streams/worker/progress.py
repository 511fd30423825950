"""Is the worker moving? Per consumed partition: the last offset taken and when it moved.

A partition is *stalled* when it has messages past the last one taken (its end, from the
consumer's high watermark) and nothing was taken from it for ``stall_seconds``. ``/healthz``
answers 503 naming the stalled partitions, so that an orchestrator restarts a worker whose
partition stopped while the process looks alive. Faust-free: ends are passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

TP = tuple[str, int]


class Progress:
    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds, self.clock = stall_seconds, clock
        self.next: dict[TP, int] = {}         # next offset expected (last taken + 1)
        self.moved: dict[TP, float] = {}      # when it last moved, or was first seen behind

    def taken(self, topic: str, partition: int, offset: int) -> None:
        tp = (topic, partition)
        if offset + 1 > self.next.get(tp, 0):
            self.next[tp] = offset + 1
            self.moved[tp] = self.clock()

    def stalled(self, ends: dict[TP, int | None]) -> list[str]:
        """The partitions behind their end with no progress for ``stall_seconds``."""
        now, out = self.clock(), []
        for tp, end in sorted(ends.items()):
            behind = (end or 0) - self.next.get(tp, 0)
            if behind <= 0:
                self.moved[tp] = now    # caught up: the clock starts when it falls behind
                continue
            since = self.moved.setdefault(tp, now)
            if now - since >= self.stall_seconds:
                out.append(f"{tp[0]}[{tp[1]}]: {behind} behind, nothing taken for "
                           f"{now - since:.0f}s")
        return out
