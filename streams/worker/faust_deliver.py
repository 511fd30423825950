"""Handing a fetched message to its stream without four tasks (Faust).

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
