"""The lead tables' state between Faust and the worker (Faust): each table's changelog written
through the worker's record batches, and its ``rocksdb://`` databases read and written by
partition."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson

from streams.worker.faust_glue import FaustProducer


def key_encoder(table: Any) -> Any:
    """How ``table`` writes a key as bytes, for its store and its changelog: for a ``json`` key
    serializer (the lead tables'), ``orjson.dumps`` — the bytes Faust's own serializer gives (it
    writes JSON with orjson), without its registry's steps (~1–2 µs a key, 3–4 keys an event);
    any other serializer is Faust's."""
    if table.key_serializer == "json":
        return orjson.dumps
    return lambda key: table.data._encode_key(key)


class FaustChangelog:
    """A lead's state written to the table's store (``state``) and its changelog topic.

    Not through ``Table.send_changelog``: its callback moves the table's persisted offset (where
    a restart resumes recovery with the ``rocksdb`` store) to every record as it is acknowledged.
    Tansu reports a partition's end as the base offset of its *last record batch* + 1; a worker
    killed after a multi-record batch was acknowledged left a persisted offset past that end, and
    every start after it failed in recovery (``ConsistencyError``: persisted offset higher than
    the highwater) — a crash loop the chaos runs found. Here only a mark (``mark``: one record,
    written after everything before it was acknowledged) moves it, to its batch's base offset.
    Recovery moves it too, to the last record it read: hence each partition's last record alone
    in its batch (``BatchSender.tails``) and ``streams.worker.fence``."""

    def __init__(self, table: Any, state: Any, producer: FaustProducer) -> None:
        self.table, self.state, self.batches = table, state, producer.batches
        self.topic = table.changelog_topic
        self.name = self.topic.get_topic_name()
        self.encode_key = key_encoder(table)
        if table.value_serializer != "raw":   # the values are the worker's bytes, as they are
            raise ValueError(f"table {table.name}: its values must be bytes (value_type=bytes)")
        self.batches.tails.add(self.name)   # a partition's last record alone in its batch

    def write(self, partition: int, key: str, value: bytes) -> Any:
        """Returns the record's future: done when the broker acknowledged it; sent at the
        producer's ``flush``. Not through Faust's ``ProducerBuffer`` (``send_soon``), which
        sends its records one at a time, awaiting each (~1 ms a record here), and whose
        ``flush`` may return before they are sent (after a 0.1 s wait)."""
        self.state.put(partition, key, value)
        return self._record(partition, key, value)

    def write_all(self, items: list[tuple[int, str, bytes]]) -> list[Any]:
        """``write`` each (partition, key, value), the store's part in one write batch per
        partition (RocksDB: one write-ahead-log append for the batch instead of one a key, ~9 →
        ~5 µs a lead measured alone)."""
        by_partition: dict[int, list[tuple[str, bytes]]] = {}
        for partition, key, value in items:
            by_partition.setdefault(partition, []).append((key, value))
        for partition, pairs in by_partition.items():
            self.state.put_all(partition, pairs)
        return [self._record(partition, key, value) for partition, key, value in items]

    def _record(self, partition: int, key: str, value: bytes) -> Any:
        return self.batches.append(self.name, partition, self.encode_key(key), value)

    def mark(self, partition: int, key: str, value: bytes) -> Any:
        return asyncio.ensure_future(self._mark(self.write(partition, key, value)))

    async def _mark(self, sent: Any) -> None:
        result = await sent
        self.table.data.set_persisted_offset(result.topic_partition, result.offset)


class RocksState:
    """The leads' bytes in Faust's ``rocksdb://`` store (the ``rocksdict`` driver): one RocksDB
    per partition under the data dir, memory bounded by RocksDB's caches; a restart recovers
    only the changelog written after the offset each database last persisted.

    Read and written by partition directly, through the store's own databases and key
    encoding: the store's mapping API picks the partition from the *current event*, and this
    worker writes its state at the checkpoint, after the batch's events (from a timer, there is
    no current event at all)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.encode_key = key_encoder(table)

    def _db(self, partition: int) -> Any:
        return self.table.data._db_for_partition(partition)

    def get(self, partition: int, lead_id: str) -> bytes | None:
        return self._db(partition).get(self.encode_key(lead_id))

    def put(self, partition: int, lead_id: str, value: bytes) -> None:
        self._db(partition).put(self.encode_key(lead_id), value)

    def put_all(self, partition: int, pairs: list[tuple[str, bytes]]) -> None:
        from rocksdict import WriteBatch

        batch, encode_key = WriteBatch(raw_mode=True), self.encode_key
        for lead_id, value in pairs:
            batch.put(encode_key(lead_id), value)
        self._db(partition).write(batch)

    def keys(self, partition: int) -> Iterator[str]:
        store = self.table.data
        for raw in self._db(partition).keys():
            if raw != store.offset_key:
                yield store._decode_key(raw)

    def recovered(self, lead_id: str, partition: int) -> None:
        """Nothing to do: recovery writes into the databases themselves."""
