"""The lead table's RocksDB access by partition (``streams.worker.faust_state.RocksState``) on
real RocksDB databases (``rocksdict``, raw mode, as Faust's ``rocksdb://`` store opens them);
the table around them is a plain stand-in with Faust's two methods the state uses."""

from __future__ import annotations

from pathlib import Path

from rocksdict import Options, Rdict

from streams.worker.faust_state import RocksState


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
