"""The lead table's RocksDB access by partition (``streams.worker.faust_state.RocksState``) on
real RocksDB databases (``rocksdict``, raw mode, as Faust's ``rocksdb://`` store opens them);
the table around them is a plain stand-in with Faust's two methods the state uses."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rocksdict import Options, Rdict

from streams.worker.faust_state import RocksState, key_encoder


class Store:
    offset_key = b"__faust\0offset__"

    def __init__(self, root: Path) -> None:
        self.root, self.dbs = root, {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            options = Options(raw_mode=True)
            options.create_if_missing(True)
            self.dbs[partition] = Rdict(str(self.root / f"p{partition}"), options=options)
        return self.dbs[partition]

    def _encode_key(self, key: str) -> bytes:
        return key.encode()

    def _decode_key(self, raw: bytes) -> str:
        return raw.decode()


class Table:
    key_serializer = "raw"   # not json: the state takes the store's own ``_encode_key``

    def __init__(self, root: Path) -> None:
        self.data = Store(root)


def test_a_write_batch_per_partition_stores_what_puts_one_by_one_store(tmp_path):
    one_by_one, batched = RocksState(Table(tmp_path / "a")), RocksState(Table(tmp_path / "b"))
    items = [(i % 3, f"lead-{i}", f"state {i} ".encode() * (i + 1)) for i in range(30)]
    items.append((1, "lead-4", b"written again: the last one counts"))
    for partition, key, value in items:
        one_by_one.put(partition, key, value)
    for partition in range(3):
        batched.put_all(partition, [(k, v) for p, k, v in items if p == partition])
    for state in (one_by_one, batched):
        assert state.get(1, "lead-4") == b"written again: the last one counts"
        assert state.get(0, "lead-4") is None   # another partition's database
    for partition in range(3):
        assert sorted(batched.keys(partition)) == sorted(one_by_one.keys(partition))
        for key in one_by_one.keys(partition):
            assert batched.get(partition, key) == one_by_one.get(partition, key)
    assert len(list(batched.keys(0))) == 10


def test_the_lead_tables_keys_are_the_bytes_fausts_own_serializer_writes():
    """The state and the changelog write a lead table's keys with ``orjson.dumps``, not through
    Faust's registry: the same bytes as Faust's ``json`` key serializer, in its store and on its
    changelog topic (a real Faust app's table; no broker is reached)."""
    import faust

    from streams.worker.checkpoint import MARKER_KEY
    from streams.worker.journal import journal_key, sent_key

    app = faust.App("funnel-keys-test", broker="kafka://127.0.0.1:1")
    table = app.Table("lead-state", default=None, partitions=4, key_type=str, value_type=bytes)
    encode = key_encoder(table)
    keys = ["u-1", "anon-0fdba219-946", "é😀 ", 'a"b\\c', "\x01\x7f\u2028", "x" * 256, MARKER_KEY,
            journal_key(3, 0), sent_key(3)]
    for key in keys:
        assert encode(key) == table.data._encode_key(key)
        assert encode(key) == table.changelog_topic.prepare_key(key, table.key_serializer)[0]
    raw = app.Table("raw-keys", default=None, partitions=4, key_type=bytes, value_type=bytes)
    assert raw.key_serializer == "raw"   # any other serializer: Faust's own steps
    assert key_encoder(raw)(b"u-1") == raw.data._encode_key(b"u-1") == b"u-1"


def test_a_changelog_takes_the_workers_bytes_as_they_are_and_only_for_a_bytes_table():
    """The lead tables hold the worker's bytes (``value_type=bytes``: Faust's ``raw``
    serializer): their changelog records carry them unchanged; a table of other values is
    refused when the changelog is made, not written wrongly."""
    import faust
    import pytest

    from streams.worker.faust_glue import FaustProducer
    from streams.worker.faust_state import FaustChangelog

    app = faust.App("funnel-values-test", broker="kafka://127.0.0.1:1")
    producer = FaustProducer(app)
    table = app.Table("lead-state", default=None, partitions=4, key_type=str, value_type=bytes)
    changelog = FaustChangelog(table, None, producer)

    async def record() -> tuple:
        changelog._record(3, "u-1", b"\x02state")
        return producer.batches.held[(changelog.name, 3)][:2]   # (held: the partition's last)

    key, value = asyncio.run(record())
    topic = table.changelog_topic
    assert (key, value) == (topic.prepare_key("u-1", table.key_serializer)[0],
                            topic.prepare_value(b"\x02state", table.value_serializer)[0])
    assert value == b"\x02state"   # what Faust's own serializers write: the bytes unchanged
    other = app.Table("other", default=None, partitions=4, key_type=str, value_type=str)
    with pytest.raises(ValueError, match="other: its values must be bytes"):
        FaustChangelog(other, None, producer)
