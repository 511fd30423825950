"""The fetcher's hand-over of a message to its stream, without a task when it need not wait
(``streams.worker.faust_deliver``), against mode's real ``Service.wait_first``; and a poll's
hand-over to the worker's inbox a run at a time, with Faust's real messages and flow control
and the real inbox (the consumer's other parts are a fake that records what it is told)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode import Service
from mode.utils.queues import FlowControlEvent

from streams.worker.faust_deliver import YIELD_EVERY, hand_over_poll, stepping
from streams.worker.faust_inbox import Inbox

wait_first = stepping(Service.wait_first)


class Fetcher(Service):
    pass


def test_a_hand_over_that_need_not_wait_finishes_in_place_without_a_task():
    async def run() -> None:
        fetcher, flow = Fetcher(), asyncio.Event()
        delivered: list[str] = []

        async def callback(message: str) -> str:
            delivered.append(message)
            return "ok"

        before = len(asyncio.all_tasks())
        results = await wait_first(fetcher, callback("m1"), flow.wait())
        assert delivered == ["m1"] and results.results == ["ok"] and not results.stopped
        assert len(asyncio.all_tasks()) == before   # nothing made, nothing left behind

    asyncio.run(run())


def test_a_hand_over_that_waits_goes_on_when_its_queue_has_room():
    async def run() -> None:
        fetcher, flow = Fetcher(), asyncio.Event()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        queue.put_nowait("full")

        async def callback(message: str) -> str:
            await queue.put(message)   # waits: the queue is full
            return "put"

        async def consumer() -> list[str]:
            await asyncio.sleep(0.01)
            return [await queue.get(), await queue.get()]

        taken = asyncio.ensure_future(consumer())
        results = await wait_first(fetcher, callback("m2"), flow.wait())
        assert results.results == ["put"]
        assert await taken == ["full", "m2"]

    asyncio.run(run())


def test_a_suspended_flow_cancels_a_hand_over_still_waiting():
    async def run() -> None:
        fetcher, flow = Fetcher(), asyncio.Event()
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        seen: list[str] = []

        async def callback(message: str) -> None:
            seen.append("started")
            try:
                await never
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        asyncio.get_running_loop().call_later(0.01, flow.set)
        results = await wait_first(fetcher, callback("m3"), flow.wait())
        await asyncio.sleep(0)
        assert seen == ["started", "cancelled"]
        assert results.results == [True]   # the flow won

    asyncio.run(run())


def test_a_hand_over_that_fails_at_once_raises_as_before():
    async def run() -> None:
        fetcher, flow = Fetcher(), asyncio.Event()

        async def callback(message: str) -> None:
            raise KeyError(message)

        with pytest.raises(KeyError):
            await wait_first(fetcher, callback("m4"), flow.wait())
        with pytest.raises(KeyError):   # and the same through mode's own path
            await Service.wait_first(fetcher, callback("m4"), asyncio.Event().wait())

    asyncio.run(run())


# --- a poll handed over a run at a time (``deliver_in_batches``) ----------------------------


class Monitor:
    def __init__(self) -> None:
        self.stream_inbound_time: dict = {}
        self.ends: list[tuple[TP, int]] = []

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        self.ends.append((tp, offset))


class Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return True


class App:
    def __init__(self) -> None:
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.monitor, self.topics = Monitor(), Topics()
        self.consumer_generation_id = 1


class Scheduler:   # the consumer scheduler's order: here each partition's records in turn
    def iterate(self, records: dict) -> Any:
        return ((tp, record) for tp, batch in records.items() for record in batch)


class PollingConsumer(Service):
    """The parts of Faust's consumer the hand-over uses; the conductor's callback records
    what it was given and what the inbox held at that moment."""

    wait_first = stepping(Service.wait_first)

    def __init__(self, app: App, inbox: Inbox) -> None:
        super().__init__()
        self.app, self.inbox = app, inbox
        self._read_offset: dict = defaultdict(lambda: None)
        self._buffered_partitions: set = set()
        self.flow_active = True
        self.suspend_flow = asyncio.Event()
        self._commit_every: int | None = None
        self._n_acked = 0
        self.scheduler = Scheduler()
        self.gaps: list[tuple[int, int, int]] = []
        self.conducted: list[tuple[str, int, int]] = []
        self.commits: list[int] = []

    def _to_message(self, tp: TP, offset: int) -> ConsumerMessage:
        return ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None,
                               tp=tp, generation_id=self.app.consumer_generation_id)

    def highwater(self, tp: TP) -> int:
        return 1000 + tp.partition

    async def _add_gap(self, tp: TP, start: int, end: int) -> None:
        self.gaps.append((start, end, len(self.inbox.items)))

    async def commit(self) -> None:
        self.commits.append(len(self.inbox.items))

    async def callback(self, message: ConsumerMessage) -> None:   # the conductor's
        self.conducted.append((message.topic, message.offset, len(self.inbox.items)))


def polling(maxsize: int = 10_000) -> tuple[App, Inbox, PollingConsumer, list[int]]:
    """An app with an inbox for ``events``, its consumer, and the sizes of the runs put."""
    app = App()
    inbox = Inbox(app, {"events"}, maxsize=maxsize)
    runs: list[int] = []
    put_all = inbox.put_all

    async def counted(messages: list) -> None:
        runs.append(len(messages))
        await put_all(messages)

    inbox.put_all = counted  # type: ignore[method-assign]
    return app, inbox, PollingConsumer(app, inbox), runs


E0, E1, C0 = TP("events", 0), TP("events", 1), TP("changelog", 0)


def test_a_polls_messages_go_into_the_inbox_in_order_a_run_at_a_time():
    async def run() -> None:
        app, inbox, consumer, runs = polling()
        await hand_over_poll(consumer, {E0: list(range(180)), E1: list(range(70))}, {E0, E1})
        assert [(m.tp, m.offset) for m in inbox.items] == \
            [(E0, o) for o in range(180)] + [(E1, o) for o in range(70)]
        assert all(m.refcount == 1 for m in inbox.items)   # held, as the conductor's was
        assert runs == [YIELD_EVERY, YIELD_EVERY, 50]
        assert consumer._read_offset == {E0: 179, E1: 69}
        assert app.monitor.ends == [(E0, 1000), (E1, 1001)]   # once a partition and poll
        assert not consumer.conducted and not consumer.gaps

    asyncio.run(run())


def test_another_topics_message_goes_through_the_conductor_after_the_run_before_it():
    async def run() -> None:
        app, inbox, consumer, runs = polling()
        consumer.scheduler = type("InTurn", (), {"iterate": staticmethod(lambda records: iter(
            [(E0, 0), (E0, 1), (C0, 0), (E0, 2)]))})()
        await hand_over_poll(consumer, {E0: [], C0: []}, {E0, C0})
        assert consumer.conducted == [("changelog", 0, 2)]   # the two before it were in
        assert [m.offset for m in inbox.items] == [0, 1, 2] and runs == [2, 1]

    asyncio.run(run())


def test_a_message_read_before_is_dropped_and_a_gap_noted_before_what_follows_it():
    async def run() -> None:
        app, inbox, consumer, runs = polling()
        consumer._read_offset[E0] = 5
        await hand_over_poll(consumer, {E0: [3, 5, 6, 9]}, {E0})
        assert [m.offset for m in inbox.items] == [5, 6, 9]
        assert consumer.gaps == [(7, 9, 2)]   # offsets 7 and 8 missing, 5 and 6 in already
        assert consumer._read_offset[E0] == 9

    asyncio.run(run())


def test_inactive_partitions_are_skipped_and_a_commit_comes_every_so_many_acks():
    async def run() -> None:
        app, inbox, consumer, runs = polling()
        consumer._commit_every, consumer._n_acked = 2, 2
        await hand_over_poll(consumer, {E0: [0, 1], E1: [0]}, {E1})
        assert [(m.tp, m.offset) for m in inbox.items] == [(E1, 0)]
        assert consumer.commits == [0] and consumer._n_acked == 0

    asyncio.run(run())


def test_a_rebalance_during_the_poll_ends_itshand_over_poll():
    async def run() -> None:
        app, inbox, consumer, runs = polling()

        def rebalanced() -> None:
            app.consumer_generation_id = 2

        asyncio.get_running_loop().call_soon(rebalanced)   # runs when the hand-over yields
        await hand_over_poll(consumer, {E0: list(range(250))}, {E0})
        assert len(inbox.items) == YIELD_EVERY and consumer._read_offset[E0] == YIELD_EVERY - 1

    asyncio.run(run())


def test_a_full_inbox_holds_the_run_and_a_suspended_flow_drops_it():
    async def run() -> None:
        app, inbox, consumer, runs = polling(maxsize=1)
        inbox.items.append(object())   # full
        handing = asyncio.ensure_future(hand_over_poll(consumer, {E0: [0, 1]}, {E0}))
        await asyncio.sleep(0.01)
        assert not handing.done() and len(inbox.items) == 1
        consumer.suspend_flow.set()   # a rebalance: the run waiting is given up
        await asyncio.wait_for(handing, 1)
        assert len(inbox.items) == 1 and consumer._read_offset[E0] == 1

    asyncio.run(run())
