"""Handing fetched messages over without four tasks each, and to the worker's inbox a run at a
time (Faust).

Faust's fetcher hands every message to its stream with ``await self.wait_first(callback(message),
self.suspend_flow.wait())`` (``faust.transport.consumer.Consumer._drain_messages``): mode's
``wait_first`` wraps each of the two, plus the service's ``stopped`` and ``crashed`` events, in
a task, waits for the first to finish and cancels the other three — four tasks and an
``asyncio.wait`` per message, ~9% of the worker's main thread (py-spy, one million leads).
The callback (the conductor putting the event in the stream's queue) almost always finishes
without waiting: a queue with room takes it at once.

So the callback's first step runs here, in the fetcher's own task. Finished (the usual case):
nothing else to wait for, and nothing is made. Waiting (the queue full, a lock held): what is
left of it goes to ``wait_first`` with the flow event as before, so a rebalance that suspends
the flow still cancels a hand-over in progress. The no-op agent of ``make bench`` is stock
Faust; this is the worker's own path.

In the worker (an app with inboxes) the fetcher's loop itself is replaced
(``deliver_in_batches``): a poll's messages for the inbox go into it a run at a time, one
``wait_first`` a run, and only another topic's message still takes the path above.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from mode.services import WaitResults

_EVENT_WAIT = asyncio.Event.wait.__code__


def deliver_without_tasks() -> None:
    """Patch Faust's consumer (once per process)."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer.wait_first, "_funnel", False):
        return
    Consumer.wait_first = stepping(Consumer.wait_first)  # type: ignore[method-assign]


def stepping(original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` (mode's ``Service.wait_first``), but a ``(callback, event.wait())`` pair —
    the fetcher's hand-over — first runs the callback's first step in place."""

    async def wait_first(self: Any, *coros: Any, timeout: float | None = None) -> Any:
        if len(coros) == 2 and getattr(coros[1], "cr_code", None) is _EVENT_WAIT \
                and timeout is None and not self.should_stop \
                and isinstance(coros[0], Coroutine):
            work, flow = coros
            try:
                waits_for = work.send(None)
            except StopIteration as done:   # finished at once: the usual case
                flow.close()
                return WaitResults([work], [done.value], False)
            except BaseException:
                flow.close()
                raise
            coros = (_rest(work, waits_for), flow)
        return await original(self, *coros, timeout=timeout)

    wait_first._funnel = True  # type: ignore[attr-defined]
    return wait_first


async def _rest(work: Coroutine, waits_for: Any) -> Any:
    return await _go_on(work, waits_for)   # a coroutine, as mode's wait_first wants


@types.coroutine
def _go_on(work: Coroutine, waits_for: Any) -> Generator[Any, Any, Any]:
    """The rest of ``work``, which ran until it waited for ``waits_for``: what it waits for goes
    up to the task running this, what comes back (a value, an exception, a cancellation) goes
    down to it."""
    while True:
        try:
            sent = yield waits_for
        except GeneratorExit:
            work.close()
            raise
        except BaseException as exc:   # a cancellation (the flow suspended) included
            try:
                waits_for = work.throw(exc)
            except StopIteration as done:
                return done.value
            continue
        try:
            waits_for = work.send(sent)
        except StopIteration as done:
            return done.value


YIELD_EVERY = 100   # messages handed over before the fetcher lets the event loop run (Faust's)


def deliver_in_batches() -> None:
    """Patch Faust's consumer (once per process): in an app with inboxes
    (``streams.worker.faust_inbox``), the fetcher hands a poll's messages for an inbox over a
    run at a time (``Inbox.put_all``), not one by one through the conductor.

    Faust's fetcher (``Consumer._drain_messages`` over ``Consumer.getmany``) did, for every
    message: an async generator step, the partition's end offset asked of the consumer thread's
    client and told to the monitor, the conductor's coroutine, the inbox's coroutine, a coroutine
    waiting for the flow to be suspended (made and thrown away), ``wait_first`` and its result.
    Here the same checks run per message where they are cheap (the flow still active, the same
    consumer generation, the partition active, the read offset and its gaps, the commit every
    ``broker_commit_every``) and the rest once per run: the end offset once per partition and
    poll; one ``wait_first`` of the hand-over against the flow's suspension per run of at most
    ``YIELD_EVERY`` messages, after which the event loop runs, as Faust's loop lets it. A
    message for another partition (none in the worker but its tables' own) goes through the
    conductor as before, after the run before it."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer._drain_messages, "_funnel", False):
        return
    original = Consumer._drain_messages

    async def _drain_messages(self: Any, fetcher: Any) -> None:
        if getattr(self.app, "funnel_inboxes", None):
            await drain_in_runs(self, fetcher)
        else:
            await original(self, fetcher)

    _drain_messages._funnel = True  # type: ignore[attr-defined]
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


async def drain_in_runs(consumer: Any, fetcher: Any) -> None:
    """Faust's ``Consumer._drain_messages`` (the fetcher's loop: poll, hand over, until the
    consumer or the fetcher stops), each poll handed over by ``hand_over_poll``."""
    from faust.transport.consumer import CONSUMER_FETCHING

    consumer_should_stop, fetcher_should_stop = consumer._stopped.is_set, fetcher._stopped.is_set
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            consumer.diag.set_flag(CONSUMER_FETCHING)
            records, active = await consumer._wait_next_records(timeout=1.0)
            await consumer.sleep(0)   # as Faust's: a poll in a loop never holds the event loop
            if records and not consumer.should_stop:
                if consumer.flow_active:
                    await hand_over_poll(consumer, records, active)
                else:   # as Faust's getmany: the flow stopped while fetching
                    try:
                        await consumer.perform_seek()
                    except Exception as exc:  # noqa: BLE001  (as Faust's)
                        consumer.log.warning(
                            f"exception performing seek when flow not active {exc}")
            consumer.diag.unset_flag(CONSUMER_FETCHING)
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            consumer.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            consumer.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        consumer.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        consumer.diag.unset_flag(CONSUMER_FETCHING)


async def hand_over_poll(consumer: Any, records: Any, active: set | None) -> None:
    """One poll's ``records`` (tp -> records) handed over in the consumer scheduler's order."""
    from streams.worker.faust_inbox import inbox_for

    app = consumer.app
    generation = app.consumer_generation_id
    read, buffered = consumer._read_offset, consumer._buffered_partitions
    to_message, track = consumer._to_message, app.monitor.track_tp_end_offset
    acks_enabled_for, commit_every = app.topics.acks_enabled_for, consumer._commit_every
    ends: set = set()
    inboxes: dict[str, Any] = {}
    run: list[Any] = []
    run_inbox: Any = None

    async def put_run() -> None:
        nonlocal run
        if run:
            batch, run = run, []
            await consumer.wait_first(run_inbox.put_all(batch), consumer.suspend_flow.wait())

    for tp, record in consumer.scheduler.iterate(records):
        if not consumer.flow_active or app.consumer_generation_id != generation:
            break
        if not (active is None or tp in active or tp in buffered):
            continue
        if tp not in ends:
            ends.add(tp)
            track(tp, consumer.highwater(tp))
        message = to_message(tp, record)
        offset, last = message.offset, read[tp]
        if last is not None and offset < last:
            continue   # read before (Faust's "DROPPED MESSAGE")
        if last and offset - last > 1 and acks_enabled_for(message.topic):
            await put_run()
            await consumer._add_gap(tp, last + 1, offset)
        if commit_every is not None and consumer._n_acked >= commit_every:
            await put_run()
            consumer._n_acked = 0
            await consumer.commit()
        inbox = inboxes.get(tp.topic, False)
        if inbox is False:
            inbox = inboxes[tp.topic] = inbox_for(app, tp.topic)
        if inbox is not run_inbox or inbox is None:
            await put_run()
            run_inbox = inbox
        if inbox is None:
            await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())
        else:
            run.append(message)
        read[tp] = offset
        if len(run) >= YIELD_EVERY:
            await put_run()
            await asyncio.sleep(0)
    await put_run()
