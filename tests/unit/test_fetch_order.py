"""The order fetched records are handed out in (``streams.worker.fetch_order``): the worker's
own topics first, then the events of all partitions in the order they were produced, each
partition's own order kept. Plain fakes for aiokafka's fetched results."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.structs import TopicPartition as TP

from streams.worker.fetch_order import FAIR_SECONDS, SLICE, Turns, hand_out_in_time, in_time


def record(tp: TP, offset: int, timestamp: int) -> SimpleNamespace:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset,
                           timestamp=timestamp)


class Records:
    """aiokafka's ``PartitionRecords``: an iterator over a partition's fetched records that
    knows where it is."""

    def __init__(self, tp: TP, stamps: list[int]) -> None:
        self.tp, self.stamps, self.next_fetch_offset = tp, stamps, 0

    def __iter__(self) -> "Records":
        return self

    def __next__(self) -> SimpleNamespace:
        if self.next_fetch_offset >= len(self.stamps):
            raise StopIteration
        self.next_fetch_offset += 1
        return record(self.tp, self.next_fetch_offset - 1, self.stamps[self.next_fetch_offset - 1])


class Failed:
    """aiokafka's ``FetchError``: a partition's fetch that failed, raised when handed out."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def check_raise(self) -> None:
        raise self.error


def fetcher_of(fetched: dict[TP, Any]) -> tuple[SimpleNamespace, dict[TP, Any]]:
    """A fetcher holding ``fetched`` (a partition's timestamps, or an error) and the consumer
    positions its results move."""
    states = {tp: SimpleNamespace(paused=False, position=0) for tp in fetched}
    for state in states.values():
        state.consumed_to = lambda offset, state=state: setattr(state, "position", offset)
    assignment = SimpleNamespace(active=True, state_value=states.__getitem__)
    records = OrderedDict(
        (tp, got if isinstance(got, Failed) else FetchResult(
            tp, assignment=assignment, backoff=0, partition_records=Records(tp, got)))
        for tp, got in fetched.items())
    return SimpleNamespace(_records=records, _notify=lambda waiter: None,
                           _wait_consume_future=None,
                           _subscriptions=SimpleNamespace(reassignment_in_progress=False)), states


def poll(fetcher: SimpleNamespace, most: int = 1000) -> dict:
    return asyncio.run(Fetcher.fetched_records(fetcher, set(), 0, most))


def test_partitions_are_drained_in_the_order_their_records_were_produced():
    """Three events partitions read unevenly in time (one's records span the whole run in a
    third of the records, as a partition with fewer keys does) and an identity partition: the
    identity messages first, then the events slice by slice, the partition handed out least far
    in time first — aiokafka alone hands each partition out until it is empty."""
    hand_out_in_time({"identity"})
    tps = [TP("events", 0), TP("events", 1), TP("identity", 0), TP("events", 2)]
    fetcher, states = fetcher_of({
        tps[0]: list(range(0, 3000, 1)),    # a record every ms
        tps[1]: list(range(0, 3000, 3)),    # every 3 ms: 1,000 records over the same time
        tps[2]: [5000] * 120,               # the worker's own messages, sent later
        tps[3]: list(range(1, 3000, 2))})   # every 2 ms
    polls = []
    while drained := poll(fetcher):
        polls.append(drained)
    first = polls[0]
    assert list(first)[0] == tps[2] and len(first[tps[2]]) == 120   # all the identity first
    # as Faust hands them out (its consumer scheduler: ``InTime``)
    handed = [r for drained in polls for tp, r in in_time(drained, {"identity"})
              if tp.topic == "events"]
    sizes = {0: 3000, 1: 1000, 2: 1500}
    assert len(handed) == sum(sizes.values())
    for p, size in sizes.items():   # each partition's own order, all of it out
        assert [r.offset for r in handed if r.partition == p] == list(range(size))
        assert states[TP("events", p)].position == size
    # how far apart in time the partitions were when each record was handed out: within a
    # slice of the slowest partition (3 ms a record) — in turns of a poll each, one partition
    # was a whole poll (1,000 records, up to 3 s) ahead of the others
    ahead = {}
    spread = 0
    for r in handed:
        ahead[r.partition] = r.timestamp
        if len(ahead) == 3:
            spread = max(spread, max(ahead.values()) - min(ahead.values()))
    assert spread <= SLICE * 3 + 3


def test_a_poll_hands_its_records_out_merged_by_time_each_partition_in_its_order():
    a, b, c = TP("events", 0), TP("events", 1), TP("identity", 0)
    records = {a: [record(a, 0, 10), record(a, 1, 30), record(a, 2, 20)],   # a clock step back
               b: [record(b, 0, 15), record(b, 1, 25)],
               c: [record(c, 0, 99)]}
    out = [(tp.partition if tp.topic == "events" else "identity", r.offset)
           for tp, r in in_time(records, {"identity"})]
    assert out == [("identity", 0), (0, 0), (1, 0), (1, 1), (0, 1), (0, 2)]


def test_errors_come_first_then_own_topics_then_the_partition_least_far_in_time():
    a, b, c, d = TP("events", 0), TP("events", 1), TP("events", 2), TP("identity", 1)
    fetcher, _ = fetcher_of({a: [1], b: [1], c: [1], d: [1], TP("events", 3): Failed(OSError("lost"))})
    turns = Turns()
    turns.last = {a: 500, b: 200}   # c was never handed out: it is first of the events
    turns.arrange(fetcher._records, {"identity"}, now=100.0)
    assert [(tp.topic, tp.partition) for tp in fetcher._records] == [
        ("events", 3), ("identity", 1), ("events", 2), ("events", 1), ("events", 0)]


def test_a_partition_passed_over_too_long_is_served_first():
    """A partition far behind in time (a producer's backlog) is served first, but one ahead of
    it does not wait for it to catch up past ``FAIR_SECONDS``: its fetched records would be
    dropped and read again as a stuck partition's."""
    behind, ahead = TP("events", 0), TP("events", 1)
    fetcher, _ = fetcher_of({ahead: [900], behind: [1]})
    turns = Turns()
    turns.last = {behind: 1, ahead: 900}
    turns.arrange(fetcher._records, set(), now=10.0)
    assert list(fetcher._records) == [behind, ahead]
    turns.served({behind: [record(behind, 0, 2)]})
    turns.arrange(fetcher._records, set(), now=10.0 + FAIR_SECONDS / 2)
    assert list(fetcher._records) == [behind, ahead]   # still behind: still first
    turns.arrange(fetcher._records, set(), now=10.0 + FAIR_SECONDS + 0.1)
    assert list(fetcher._records) == [ahead, behind]   # waited long enough: its turn
    turns.served({ahead: [record(ahead, 0, 901)]})
    turns.arrange(fetcher._records, set(), now=10.0 + FAIR_SECONDS + 0.2)
    assert list(fetcher._records) == [behind, ahead]   # served: back in time order


def test_an_error_is_raised_as_aiokafka_raises_it_and_nothing_drained_is_lost():
    """An error waiting for a partition is raised by the poll before any record is handed
    out (arranged first), so no record taken out of a fetched result is dropped with it; the
    next poll hands the records out."""
    a = TP("events", 0)
    fetcher, states = fetcher_of({a: [1, 2, 3], TP("events", 1): Failed(OSError("partition lost"))})
    try:
        poll(fetcher)
        raise AssertionError("the error was not raised")
    except OSError as exc:
        assert "partition lost" in str(exc)
    assert states[a].position == 0
    assert [r.offset for r in poll(fetcher)[a]] == [0, 1, 2]
