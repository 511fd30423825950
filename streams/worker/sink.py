"""One batching sink for every writer of the worker (the projection, campaign spend).

Items are added with the message that brought them; ``flush`` writes the batch with the
writer's ``write(items)`` and then acknowledges the messages, so an offset is committed only
after its item is in the database. Sized from ``Settings`` (``FUNNEL_SINK_MAX_ITEMS``,
``FUNNEL_SINK_INTERVAL``). Faust-free: ``ack`` is any coroutine function.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BatchingSink(Generic[T]):
    def __init__(self, write: Callable[[list[T]], Awaitable[Any]],
                 ack: Callable[[Any], Awaitable[None]], max_items: int, max_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.ack = write, ack
        self.max_items, self.max_seconds, self.clock = max_items, max_seconds, clock
        self.items: list[T] = []
        self.messages: list[Any] = []
        self.started = clock()
        self.lock = asyncio.Lock()

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
        return bool(self.messages) and (len(self.messages) >= self.max_items
                                        or self.clock() - self.started >= self.max_seconds)

    async def flush(self) -> list[Any]:
        """Write the batch, then acknowledge its messages; returns them."""
        async with self.lock:
            if not self.messages:
                return []
            items, messages = self.items, self.messages
            self.items, self.messages = [], []
            if items:
                await self.write(items)
            for message in messages:
                await self.ack(message)
            return messages
