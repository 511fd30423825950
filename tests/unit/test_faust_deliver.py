"""The fetcher's hand-over of a message to its stream, without a task when it need not wait
(``streams.worker.faust_deliver``), against mode's real ``Service.wait_first``."""

from __future__ import annotations

import asyncio

import pytest
from mode import Service

from streams.worker.faust_deliver import stepping

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
