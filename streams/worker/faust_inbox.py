"""The pipeline's messages handed over in batches, not through a Faust stream (Faust).

A Faust agent gets each message through its stream: the conductor's callback locks, decodes
the message into an ``Event``, puts it in the stream's queue (with its pressure callbacks); the
stream takes it out, sets the current event, runs its sensors and processors; the agent
acknowledges it through the stream (more sensors). py-spy put it at ~15% of the worker's busy
thread (8,000 simulated leads); without it the worker took 41–53% more events per second (A/B),
and a no-op agent 5× as many — all for a pipeline that reads raw bytes and acknowledges a whole
batch at its checkpoint.

Here the fetched messages of the pipeline's topics go into an ``Inbox`` instead: the
conductor's callback for those topic partitions waits while the flow is suspended (a
rebalance), counts the message as held (``incref``) and appends it; the agent takes what is
there, a batch at a time. What stays Faust's: the fetch, the consumer's tracking of each
message handed out and its sensors for messages in and out (called here as the stream would),
the offsets' commit, the wait for every message handed out to be acknowledged (``wait_empty``).
The inbox is one of the queues Faust's flow control clears at a rebalance: the messages in it
are dropped (read again from the committed offsets) and no longer count as handed out. The
agent's stream is only subscribed (``subscribe``), never iterated.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class Inbox:
    def __init__(self, app: Any, topics: set[str], maxsize: int) -> None:
        self.app, self.topics, self.maxsize = app, frozenset(topics), maxsize
        self.items: deque = deque()
        self.ready, self.room = asyncio.Event(), asyncio.Event()
        self.stream: Any = None   # the agent's stream (``subscribe``), for its events' count
        app.flow_control.manage_queue(self)   # cleared at a rebalance (a weak set: held here)
        hand_over_to_inboxes()
        inboxes = getattr(app, "funnel_inboxes", None)
        if inboxes is None:
            inboxes = app.funnel_inboxes = []
        inboxes.append(self)

    def subscribe(self, stream: Any) -> None:
        """Register ``stream``'s topics with the conductor, as iterating it would (Faust's
        ``Topic.__aiter__``): the consumer subscribes to them, and their partitions' messages
        come here (``handler``)."""
        self.stream = stream
        stream.channel.__aiter__()

    def clear(self) -> None:
        """Faust's flow control at a rebalance: what is waiting here is dropped."""
        self.items.clear()
        self.room.set()

    def handler(self, conductor: Any) -> Callable[[Any], Any]:
        """The conductor's callback for one of the inbox's topic partitions: ``put_all`` of one
        message (the fetcher hands the inbox's messages over a run at a time itself,
        ``streams.worker.faust_deliver.deliver_in_batches``)."""

        async def on_message(message: Any) -> None:
            await self.put_all([message])

        return on_message

    async def put_all(self, messages: list[Any]) -> None:
        """``messages`` in, in order: held while the flow is suspended or the inbox is full,
        then each counted as held (Faust's reference count) and appended."""
        flow = self.app.flow_control
        if not flow.is_active():
            await flow.acquire()   # a rebalance: until the flow resumes
        while len(self.items) >= self.maxsize:
            self.room.clear()
            await self.room.wait()
        for message in messages:
            message.incref(1)
        self.items.extend(messages)
        if not self.ready.is_set():
            self.ready.set()

    async def take(self, most: int) -> list[Any]:
        """Up to ``most`` messages, in the order they were handed over; waits for one. Yields to
        the event loop first, so that a busy agent never starves the fetcher and the writes.

        What a Faust stream does with a message it takes is done here: one handed over before a
        rebalance (the flow suspended, or another consumer generation) is not taken — read
        again from the committed offsets after it; the others are tracked as handed out (Faust
        waits for them to be acknowledged before a rebalance or a stop can finish) and counted
        by the sensors (the stream's event count too, where the monitor keeps one: Funnel's
        Prometheus sensor, ``events_taken``); and the time each partition last had a message
        taken is noted where Faust's liveness check reads it (``Monitor.stream_inbound_time``:
        without it the consumer thread logged "Stream has not started processing" for every
        partition, every few seconds, once the worker had run ``stream_processing_timeout``, 5
        minutes)."""
        await asyncio.sleep(0)
        items = self.items
        while not items:
            self.ready.clear()
            await self.ready.wait()
        app = self.app
        active, generation = app.flow_control.is_active(), app.consumer_generation_id
        handed_out, counted = app.consumer.unacked.add, app.sensors.on_message_in
        inbound, now = app.monitor.stream_inbound_time, time.monotonic()
        counted_all = counted_at_once(app, "messages_in")
        batch, new = [], []
        for _ in range(min(most, len(items))):
            message = items.popleft()
            if not active or message.generation_id != generation:
                continue
            if not message.tracked:
                message.tracked = True
                handed_out(message)
                if counted_all is None:
                    counted(message.tp, message.offset, message)
                else:
                    new.append(message)
            inbound[message.tp] = now
            batch.append(message)
        if new:
            counted_all(new)
        if len(items) < self.maxsize:
            self.room.set()
        events_taken = getattr(app.monitor, "events_taken", None)
        if events_taken is not None:
            events_taken(self.stream, len(batch))
        return batch

    async def ack_all(self, messages: list[Any]) -> None:
        """``messages`` done: their offsets may be committed (Faust's ``Stream.ack`` of each,
        without the stream's own sensor); counted out by the monitor at once where it can."""
        consumer, sensors = self.app.consumer, self.app.sensors
        done = [message for message in messages if message.ack(consumer)]
        counted_all = counted_at_once(self.app, "messages_out")
        if counted_all is not None:
            counted_all(done)
            return
        for message in done:
            sensors.on_message_out(message.tp, message.offset, message)


def counted_at_once(app: Any, name: str) -> Callable[[list], None] | None:
    """The monitor's count of a whole batch of messages taken or done (``messages_in``,
    ``messages_out``: Funnel's Prometheus sensor), when it is the app's only sensor; else None
    (each message goes to every sensor, as Faust's stream would tell them)."""
    bulk = getattr(app.monitor, name, None)
    return bulk if bulk is not None and list(app.sensors) == [app.monitor] else None


def hand_over_to_inboxes() -> None:
    """Patch Faust's conductor (once per process): a topic partition of an app's inbox gets
    the inbox's callback instead of the one that feeds the streams."""
    from faust.transport.conductor import Conductor

    if getattr(Conductor._build_handler, "_funnel", False):
        return
    original = Conductor._build_handler

    def _build_handler(self: Any, tp: Any, channels: Any) -> Any:
        inbox = inbox_for(self.app, tp.topic)
        return original(self, tp, channels) if inbox is None else inbox.handler(self)

    _build_handler._funnel = True  # type: ignore[attr-defined]
    Conductor._build_handler = _build_handler  # type: ignore[method-assign]


def inbox_for(app: Any, topic: str) -> Inbox | None:
    """The inbox of ``app`` that takes ``topic``'s messages, if any."""
    for inbox in getattr(app, "funnel_inboxes", ()):
        if topic in inbox.topics:
            return inbox
    return None
