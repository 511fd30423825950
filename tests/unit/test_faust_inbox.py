"""The pipeline's inbox (``streams.worker.faust_inbox``): Faust's real ``Message`` (its
reference count and acknowledgement) and mode's real flow control; the consumer and the sensors
are plain fakes that record what they are told."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent

from streams.worker.faust_inbox import Inbox, inbox_for


class Consumer:
    def __init__(self) -> None:
        self.unacked: set = set()
        self.acked: list[int] = []

    def ack(self, message: Any) -> bool:   # Faust's: True when the offset counts as done
        if message.acked:
            return False
        message.acked = True
        self.unacked.discard(message)
        self.acked.append(message.offset)
        return True


class Sensors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        self.seen.append(("in", offset))

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        self.seen.append(("out", offset))


class Monitor:   # the part of Faust's monitor its consumer thread's liveness check reads
    def __init__(self) -> None:
        self.stream_inbound_time: dict[TP, float] = {}
        self.taken: list[tuple[Any, int]] = []

    def events_taken(self, stream: Any, n: int) -> None:   # Funnel's Prometheus sensor's
        self.taken.append((stream, n))


class Channel:
    def __init__(self) -> None:
        self.iterated = 0

    def __aiter__(self) -> "Channel":   # Faust's Topic registers itself with the conductor here
        self.iterated += 1
        return self


class Stream:
    def __init__(self) -> None:
        self.channel = Channel()


class App:
    def __init__(self) -> None:
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.consumer, self.sensors, self.monitor = Consumer(), Sensors(), Monitor()
        self.consumer_generation_id = 1


class Conductor:
    def __init__(self, app: App) -> None:
        self.app = app


def message(offset: int, generation: int = 1, topic: str = "events") -> ConsumerMessage:
    return ConsumerMessage(topic, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=TP(topic, 0),
                           generation_id=generation)


def started(maxsize: int = 100) -> tuple[App, Inbox, Any]:
    """An app, its inbox for ``events`` and the conductor's callback that hands messages to it."""
    app = App()
    inbox = Inbox(app, {"events"}, maxsize=maxsize)
    return app, inbox, inbox.handler(Conductor(app))


def test_messages_come_out_in_order_a_batch_at_a_time_tracked_and_counted():
    async def run() -> None:
        app, inbox, hand_over = started()
        stream = Stream()
        inbox.subscribe(stream)
        for offset in range(5):
            await hand_over(message(offset))
        first = await inbox.take(3)
        rest = await inbox.take(10)
        assert [m.offset for m in first] == [0, 1, 2] and [m.offset for m in rest] == [3, 4]
        assert app.consumer.unacked == set(first + rest)   # handed out: Faust waits for them
        assert app.sensors.seen == [("in", o) for o in range(5)]
        assert all(m.refcount == 1 for m in first + rest)
        # Faust's liveness check sees the partition processing (else it logs an error)
        assert set(app.monitor.stream_inbound_time) == {TP("events", 0)}
        # subscribed as iterating the stream would; its events counted per batch taken
        assert stream.channel.iterated == 1 and app.monitor.taken == [(stream, 3), (stream, 2)]

    asyncio.run(run())


def test_an_acknowledged_message_is_done_once_and_leaves_the_handed_out_set():
    async def run() -> None:
        app, inbox, hand_over = started()
        await hand_over(message(7))
        [m] = await inbox.take(10)
        await inbox.ack_all([m])
        await inbox.ack_all([m])   # again (a batch written twice): nothing more
        assert app.consumer.acked == [7] and not app.consumer.unacked
        assert app.sensors.seen == [("in", 7), ("out", 7)]

    asyncio.run(run())


def test_take_waits_for_a_message():
    async def run() -> None:
        app, inbox, hand_over = started()
        taking = asyncio.ensure_future(inbox.take(10))
        await asyncio.sleep(0.01)
        assert not taking.done()
        await hand_over(message(3))
        assert [m.offset for m in await asyncio.wait_for(taking, 1)] == [3]

    asyncio.run(run())


def test_a_full_inbox_holds_the_hand_over_until_there_is_room():
    async def run() -> None:
        app, inbox, hand_over = started(2)
        await hand_over(message(0))
        await hand_over(message(1))
        third = asyncio.ensure_future(hand_over(message(2)))
        await asyncio.sleep(0.01)
        assert not third.done() and len(inbox.items) == 2
        assert [m.offset for m in await inbox.take(1)] == [0]
        await asyncio.wait_for(third, 1)
        assert [m.offset for m in await inbox.take(10)] == [1, 2]

    asyncio.run(run())


def test_a_rebalance_drops_what_waits_and_holds_what_comes_until_the_flow_resumes():
    async def run() -> None:
        app, inbox, hand_over = started()
        waiting = message(0)
        await hand_over(waiting)
        app.flow_control.suspend()
        app.flow_control.clear()   # Faust's revocation clears the queues it manages
        assert not inbox.items
        late = asyncio.ensure_future(hand_over(message(1)))
        await asyncio.sleep(0.01)
        assert not late.done() and not inbox.items   # held while the flow is suspended
        app.flow_control.resume()
        await asyncio.wait_for(late, 1)
        assert [m.offset for m in await inbox.take(10)] == [1]
        assert waiting not in app.consumer.unacked   # dropped, never handed out

    asyncio.run(run())


def test_a_message_from_before_a_rebalance_is_not_taken():
    async def run() -> None:
        app, inbox, hand_over = started()
        await hand_over(message(0, generation=1))
        await hand_over(message(1, generation=2))
        app.consumer_generation_id = 2
        assert [m.offset for m in await inbox.take(10)] == [1]
        assert [m.offset for m in app.consumer.unacked] == [1]

    asyncio.run(run())


def test_only_the_inbox_topics_are_handed_to_it():
    app, other_app = App(), App()
    events = Inbox(app, {"events", "identity"}, maxsize=100)
    leads = Inbox(other_app, {"leads"}, maxsize=100)
    assert inbox_for(app, "events") is events and inbox_for(app, "identity") is events
    assert inbox_for(app, "leads") is None and inbox_for(other_app, "leads") is leads
    assert inbox_for(App(), "events") is None   # an app without an inbox: Faust's streams


class CountingMonitor(Monitor):   # Funnel's Prometheus sensor: counts a batch at once
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[str, list[int]]] = []

    def messages_in(self, messages: list) -> None:
        self.batches.append(("in", [m.offset for m in messages]))

    def messages_out(self, messages: list) -> None:
        self.batches.append(("out", [m.offset for m in messages]))


class OneSensor(Sensors):   # Faust's sensor delegate, iterable over its sensors
    def __init__(self, sensors: list) -> None:
        super().__init__()
        self.sensors = sensors

    def __iter__(self) -> Any:
        return iter(self.sensors)


def test_the_monitor_counts_a_batch_at_once_when_it_is_the_only_sensor():
    async def run() -> None:
        app, inbox, hand_over = started()
        app.monitor = CountingMonitor()
        app.sensors = OneSensor([app.monitor])
        for offset in range(4):
            await hand_over(message(offset))
        first = await inbox.take(3)
        await inbox.ack_all(first + first[:1])   # one twice: counted out once
        await inbox.take(10)
        assert app.monitor.batches == [("in", [0, 1, 2]), ("out", [0, 1, 2]), ("in", [3])]
        assert not app.sensors.seen   # nothing went message by message
        assert app.consumer.acked == [0, 1, 2]

        app.sensors = OneSensor([app.monitor, Sensors()])   # another sensor: each message
        await hand_over(message(4))
        [m] = await inbox.take(10)
        await inbox.ack_all([m])
        assert app.sensors.seen == [("in", 4), ("out", 4)] and len(app.monitor.batches) == 3

    asyncio.run(run())


def test_the_prometheus_sensor_counts_a_batch_as_it_counts_its_messages_one_by_one():
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
    from prometheus_client import CollectorRegistry

    from streams.worker.web import lean_monitor

    def sensor() -> tuple[Any, CollectorRegistry]:
        registry = CollectorRegistry()
        return lean_monitor(PrometheusMonitor(FaustMetrics.create(registry, "t"))), registry

    def figures(monitor: Any, registry: CollectorRegistry) -> tuple:
        samples = sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                         for family in registry.collect() for s in family.samples
                         if not s.name.endswith("_created"))
        return (samples, monitor.messages_received_total, monitor.messages_active,
                dict(monitor.messages_received_by_topic), dict(monitor.tp_read_offsets))

    messages = [message(o, topic=t) for o, t in [(0, "events"), (5, "identity"), (1, "events"),
                                                 (6, "identity"), (2, "events")]]
    one_by_one, registry_a = sensor()
    for m in messages:
        one_by_one.on_message_in(m.tp, m.offset, m)
    for m in messages[:3]:
        one_by_one.on_message_out(m.tp, m.offset, m)
    batched, registry_b = sensor()
    copies = [message(m.offset, topic=m.topic) for m in messages]
    batched.messages_in(copies)
    batched.messages_out(copies[:3])
    assert figures(batched, registry_b) == figures(one_by_one, registry_a)
    assert figures(batched, registry_b)[2] == 2   # five in, three out
    assert all(m.time_in is not None for m in copies)
    assert all(m.time_total is not None for m in copies[:3]) and copies[3].time_total is None
