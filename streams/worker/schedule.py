"""When each lead next needs the periodic pass: SLA breaches, expired MQLs, cooling.

A heap of (due time, lead id) with the latest due time (and the partition) per lead; superseded
entries are skipped when popped and compacted away when they outnumber the live ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime

COMPACT_SLACK = 1024


class DeadlineSchedule:
    def __init__(self) -> None:
        self.next: dict[str, datetime] = {}
        self.partition: dict[str, int] = {}
        self.heap: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self.next)

    def __contains__(self, lead_id: str) -> bool:
        return lead_id in self.next

    def set(self, lead_id: str, when: datetime | None, partition: int = 0) -> None:
        """The lead (of ``partition``) is next due at ``when`` (None: never, until it changes
        again)."""
        if when is None:
            self.next.pop(lead_id, None)
            self.partition.pop(lead_id, None)
            return
        self.partition[lead_id] = partition
        if self.next.get(lead_id) == when:
            return
        self.next[lead_id] = when
        heapq.heappush(self.heap, (when, lead_id))
        if len(self.heap) > 2 * len(self.next) + COMPACT_SLACK:
            # most entries were superseded by later events: keep one per lead
            self.heap = [(t, k) for k, t in self.next.items()]
            heapq.heapify(self.heap)

    def pop_due(self, now: datetime) -> Iterator[tuple[str, int]]:
        """The leads due by ``now`` (id, partition), earliest first; each leaves the schedule as
        it is yielded (``set`` it again to keep it)."""
        while self.heap and self.heap[0][0] <= now:
            when, lead_id = heapq.heappop(self.heap)
            if self.next.get(lead_id) != when:
                continue   # rescheduled since
            del self.next[lead_id]
            yield lead_id, self.partition.pop(lead_id, 0)
