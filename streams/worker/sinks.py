"""The worker's writers into PostgreSQL, each a ``BatchingSink`` over one topic:
``funnel.leads`` → the lead tables (``ProjectionSink``), ``funnel.costs`` → ``campaign_costs``.

Faust-free: a message is any token the ``ack`` coroutine understands (the wiring passes
``(stream, event)``); the value is decoded here, and a foreign value on the topic is skipped
with a log line (and still acknowledged) instead of stopping the writer. A row PostgreSQL
refuses is dead-lettered (``error=projection_refused``, the topic, partition and offset it was
read at) and the rest of its batch is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel

from schemas.costs import AdSpend
from schemas.lead import LeadSnapshot
from streams.db.writer import Projection
from streams.settings import Settings
from streams.worker.metrics import Metrics
from streams.records import Record, Source, dead_letter_record
from streams.worker.sink import BatchingSink

log = logging.getLogger("funnel.sinks")

Ack = Callable[[Any], Awaitable[None]]
Send = Callable[[Record], Awaitable[None]]


class TopicSink:
    """Values of one topic, decoded as ``model``, written in batches by ``write``."""

    def __init__(self, topic: str, model: type[BaseModel],
                 write: Callable[[list[Any], Any], Awaitable[Any]], ack: Ack, settings: Settings,
                 dead_letter: Send, dlq: str) -> None:
        self.topic, self.model, self.write_items = topic, model, write
        self.dead_letter, self.dlq = dead_letter, dlq
        self.batch: BatchingSink[tuple[Any, Source]] = BatchingSink(
            self.write, ack, settings.sink_max_items, settings.sink_interval)
        self.last: dict[int, Source] = {}   # partition -> the last message added from it

    def add(self, source: Source, token: Any) -> None:
        self.last[source.partition] = source
        item = self.readable(source, self.read)
        self.batch.add(None if item is None else (item, source), token)

    def read(self, source: Source) -> Any:
        """What the batch keeps of a message (here: its decoded value)."""
        return self.model.model_validate_json(source.value or b"")

    def readable(self, source: Source, read: Callable[[Source], Any]) -> Any:
        """``read(source)``, or None for a foreign message on our topic (skipped, said so)."""
        try:
            return read(source)
        except Exception as exc:  # noqa: BLE001
            log.error("skipping an unreadable %s on %s: %s", self.model.__name__, self.topic, exc)
            return None

    async def write(self, pairs: list[tuple[Any, Source]]) -> None:
        sources = {id(item): source for item, source in pairs}   # the writer passes items back

        async def refused(item: Any, exc: Exception) -> None:
            await self.dead_letter(dead_letter_record(
                self.dlq, sources[id(item)], "projection_refused", f"{type(exc).__name__}: {exc}"))

        await self.write_items([item for item, _ in pairs], refused)

    def due(self) -> bool:
        return self.batch.due()

    async def flush(self, wait: bool = True) -> list[Any]:
        return await self.batch.flush(wait)

    def drop(self) -> list[Any]:
        return self.batch.drop()


class ProjectionSink(TopicSink):
    """Snapshots into the lead tables; counts rows and keeps the projection's lag.

    A snapshot is only looked at (its ``lead_id`` and ``version``) when it comes; at the flush
    the newest one per lead is validated and written, the older ones of the batch are not
    decoded at all (a lead changed in several checkpoints of one sink batch is validated once:
    validation was the projection's largest cost)."""

    def __init__(self, topic: str, writer: Projection, ack: Ack, settings: Settings,
                 metrics: Metrics, dead_letter: Send, dlq: str,
                 highwater: Callable[[str, int], int | None]) -> None:
        super().__init__(topic, LeadSnapshot, self.write_snapshots, ack, settings, dead_letter,
                         dlq)
        self.writer, self.metrics, self.highwater = writer, metrics, highwater

    def read(self, source: Source) -> tuple[str, int]:
        head = orjson.loads(source.value or b"")
        return str(head["lead_id"]), int(head["version"])

    async def write(self, pairs: list[tuple[Any, Source]]) -> None:
        newest: dict[str, tuple[int, Source]] = {}
        for (lead_id, version), source in pairs:
            if lead_id not in newest or version > newest[lead_id][0]:
                newest[lead_id] = (version, source)
        decode = super().read   # the snapshot itself, only for the newest per lead
        decoded = [(snapshot, source) for _, source in newest.values()
                   if (snapshot := self.readable(source, decode)) is not None]
        await super().write(decoded)

    async def write_snapshots(self, snapshots: list[LeadSnapshot], refused: Any) -> None:
        self.metrics.projected.inc(await self.writer.write(snapshots, refused))

    async def flush(self, wait: bool = True) -> list[Any]:
        """Write the batch, then record the lag: per partition, snapshots past the last one
        written (``highwater(topic, partition)`` is its end); and the newest one's age."""
        last = dict(self.last)   # what this flush writes, before anything more is added
        taken = await super().flush(wait)
        if taken:
            behind = {p: max((self.highwater(s.topic, p) or 0) - s.offset - 1, 0)
                      for p, s in last.items()}
            self.metrics.set_projection_lag(sum(behind.values()))
            newest = max((s.timestamp or 0.0) for s in last.values())
            self.metrics.projection_lag_seconds.set(max(time.time() - newest, 0.0))
        return taken


def spend_sink(topic: str, writer: Projection, ack: Ack, settings: Settings, dead_letter: Send,
               dlq: str) -> TopicSink:
    """Spend reports into ``campaign_costs`` (the latest report for a period wins)."""
    return TopicSink(topic, AdSpend, writer.write_spends, ack, settings, dead_letter, dlq)
