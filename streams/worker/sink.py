"""One batching sink for every writer of the worker (the projection, campaign spend).

Items are added with the message that brought them; ``flush`` writes the batch with the
writer's ``write(items)`` and then acknowledges the messages, so an offset is committed only
after its item is in the database. Sized from ``Settings`` (``FUNNEL_SINK_MAX_ITEMS``,
``FUNNEL_SINK_INTERVAL``). Faust-free: ``ack`` is any coroutine function.

A write that fails with anything but what the writer handles itself (a row PostgreSQL refuses is
dead-lettered, a lost connection retried by ``streams.db.writer``) never leaves ``flush``: it
ended the sink's agent, or the whole worker, before. The batch is kept, nothing of it is
acknowledged, and it is written again later, waiting longer each time (``RETRY_SECONDS`` up to
``RETRY_MAX_SECONDS``): the projection's lag grows and ``/healthz`` reports the stall. The flush
that failed waits out that time (outside the lock) before it returns, so the agent that called it
takes no more messages meanwhile: the kept batch does not grow with the topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("funnel.sink")

RETRY_SECONDS, RETRY_MAX_SECONDS = 1.0, 60.0


class BatchingSink(Generic[T]):
    def __init__(self, write: Callable[[list[T]], Awaitable[Any]],
                 ack: Callable[[Any], Awaitable[None]], max_items: int, max_seconds: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.write, self.ack = write, ack
        self.max_items, self.max_seconds, self.clock = max_items, max_seconds, clock
        self.sleep = sleep
        self.items: list[T] = []
        self.messages: list[Any] = []
        self.started = clock()
        self.lock = asyncio.Lock()
        self.failures = 0
        self.retry_at = 0.0   # after a failed write: not due before this

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, item: T | None, message: Any) -> None:
        """``item`` (None: nothing to write, but ``message`` is still acknowledged in order)."""
        if not self.messages:
            self.started = self.clock()
        if item is not None:
            self.items.append(item)
        self.messages.append(message)

    def due(self) -> bool:
        now = self.clock()
        return bool(self.messages) and now >= self.retry_at and (
            len(self.messages) >= self.max_items or now - self.started >= self.max_seconds)

    async def flush(self, wait: bool = True) -> list[Any]:
        """Write the batch, then acknowledge its messages; returns them. None when the write
        failed: the batch is kept for a later flush, and (``wait``) this one returns only once
        the wait before the next try is over."""
        async with self.lock:
            if not self.messages:
                return []
            items, messages = self.items, self.messages
            self.items, self.messages = [], []
            try:
                if items:
                    await self.write(items)
            except Exception:  # noqa: BLE001  (no payload may end the worker)
                delay = self._failed(items, messages)
            else:
                self.failures, self.retry_at = 0, 0.0
                for message in messages:
                    await self.ack(message)
                return messages
        if wait:
            await self.sleep(delay)
        return []

    def drop(self) -> list[Any]:
        """Forget the batch without acknowledging it (a stop or a rebalance after a failed
        write: its messages are read again from the committed offsets); returns them."""
        messages = self.messages
        self.items, self.messages, self.failures, self.retry_at = [], [], 0, 0.0
        return messages

    def _failed(self, items: list[T], messages: list[Any]) -> float:
        """Keep the batch (ahead of what came meanwhile); returns the wait before the next
        try."""
        self.items, self.messages = items + self.items, messages + self.messages
        delay = min(RETRY_SECONDS * 2 ** self.failures, RETRY_MAX_SECONDS)
        self.failures += 1
        self.retry_at = self.clock() + delay
        log.exception("writing a batch of %d failed (%d time(s) in a row): kept, written again "
                      "in %.0fs", len(items), self.failures, delay)
        return delay
