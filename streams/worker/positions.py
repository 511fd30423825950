"""Each consumed partition taken in offset order, each message once, from its seek on.

faust-streaming (0.15) can hand an agent messages it should not take, and skip ones it should:
what recovery fetched from the old position before the seek, and — found by the chaos runs with
two workers, one killed — nothing at all for the records its fetch loop dropped (a partition
paused while they were in flight: the consumer's position had moved past them). Faust's commit
then counts a lost offset as done once the next one is acknowledged (it allows a hole of one
after the committed offset, and it fills the "gaps" it saw in the offsets), so such a message was
lost for good, and a merge with it. The worker therefore takes a partition's messages only in
order: ``admit`` answers, for each message an agent is handed, whether to take it, skip it (taken
already, or from before this generation's seek), or seek the partition back to the first offset
not taken. Faust-free: the caller seeks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

TP = tuple[str, int]
TAKE, SKIP, SEEK = "take", "skip", "seek"

log = logging.getLogger("funnel.worker")


class Positions:
    def __init__(self, clock: Callable[[], float] = time.monotonic, retry: float = 2.0,
                 tries: int = 3) -> None:
        self.clock, self.retry, self.tries = clock, retry, tries
        self.expected: dict[TP, int] = {}                  # the next offset to take
        self.seeking: dict[TP, tuple[int, int, float]] = {}   # sought back to, tries, when

    def sought(self, offsets: dict[TP, int]) -> None:
        """The consumer was sought to ``offsets`` (the group's committed offsets). Within a
        generation an offset never goes back: what was taken stays taken."""
        for tp, offset in offsets.items():
            self.expected[tp] = max(offset, self.expected.get(tp, offset))

    def clear(self) -> None:
        """A rebalance starts: nothing is taken until the next seek."""
        self.expected.clear()
        self.seeking.clear()

    def admit(self, tp: TP, offset: int) -> str:
        want = self.expected.get(tp)
        if want is None or offset < want:
            return SKIP                 # before the seek, or taken already
        if offset == want:
            self.expected[tp] = offset + 1
            self.seeking.pop(tp, None)
            return TAKE
        at, tries, when = self.seeking.get(tp, (want, 0, -math.inf))
        if at != want:
            tries, when = 0, -math.inf
        now = self.clock()
        if now - when < self.retry:
            return SKIP                 # sought back already: what comes is from before
        if tries >= self.tries:         # not there (a compacted topic, transaction markers)
            log.warning("%s[%s]: offsets %s to %s never came after %d seeks: taken as absent",
                        tp[0], tp[1], want, offset - 1, tries)
            self.expected[tp] = offset + 1
            self.seeking.pop(tp, None)
            return TAKE
        self.seeking[tp] = (want, tries + 1, now)
        return SEEK
