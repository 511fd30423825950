"""A table's stored offset inside its changelog partition's last record batch is set back to
that batch's base before Faust's recovery compares it with the end the broker reports (Tansu
answers the last batch's base + 1); one past the partition's true end is left for Faust's
check to refuse. Against the session's real broker; the tables are plain fakes."""

from __future__ import annotations

from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import NewTopic

from streams.clients import admin, reported_and_true_ends
from streams.settings import Settings
from streams.worker.fence import fence_tables
from tests.integration.conftest import fresh_settings


class FakeDB:
    closed = False

    def close(self) -> None:
        self.closed = True


class FakeStore:
    """Faust's ``rocksdb://`` store: a database per partition, opened when first used."""

    def __init__(self, offsets: dict[int, int], tmp: Path) -> None:
        self.offsets, self.tmp = offsets, tmp
        self._dbs: dict[int, FakeDB] = {}
        self.opened: list[FakeDB] = []

    def _open(self, partition: int) -> None:
        if partition not in self._dbs:
            self._dbs[partition] = FakeDB()
            self.opened.append(self._dbs[partition])

    def partition_path(self, partition: int) -> Path:
        path = self.tmp / f"p{partition}.db"
        if partition in self.offsets:
            path.mkdir(exist_ok=True)
        return path

    def persisted_offset(self, tp) -> int | None:
        self._open(tp.partition)
        return self.offsets.get(tp.partition)

    def set_persisted_offset(self, tp, offset: int) -> None:
        self._open(tp.partition)
        self.offsets[tp.partition] = offset


class FakeTopic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class FakeTable:
    def __init__(self, topic: str, store: FakeStore) -> None:
        self.changelog_topic, self.data = FakeTopic(topic), store


class FakeApp:
    def __init__(self, *tables: FakeTable) -> None:
        self.tables = {n: t for n, t in enumerate(tables)}


def changelog(backends, tmp_path) -> tuple[Settings, str, KafkaProducer]:
    """Fresh settings (2 partitions), a changelog topic of two partitions, a producer that
    batches what is sent within 200 ms."""
    settings = fresh_settings(backends, tmp_path, partitions=2)
    topic = f"{settings.topic_prefix}lead-state-changelog"
    client = admin(settings)
    try:
        client.create_topics([NewTopic(topic, 2, 1)])
    finally:
        client.close()
    return settings, topic, KafkaProducer(bootstrap_servers=settings.bootstrap_servers(),
                                          linger_ms=200)


def test_a_stored_offset_in_the_last_batch_is_fenced_to_what_the_broker_reports(
        backends, tmp_path):
    settings, topic, out = changelog(backends, tmp_path)
    for i in range(2):
        out.send(topic, key=b"k", value=b"alone %d" % i, partition=0).get(30)  # batches of one
    for i in range(3):   # one batch of three: offsets 2..4
        out.send(topic, key=b"k%d" % i, value=b"v", partition=0)
    out.flush()
    out.close()
    reported, true = reported_and_true_ends(settings, [(topic, 0), (topic, 1)])
    assert true[(topic, 0)] == 5 and true[(topic, 1)] == 0
    assert reported[(topic, 0)] in (3, 5)   # Tansu: the last batch's base + 1; Kafka: 5

    store = FakeStore({0: 4}, tmp_path)     # recovered the whole partition
    moved = fence_tables(FakeApp(FakeTable(topic, store)), settings)
    assert store.offsets[0] == reported[(topic, 0)] - 1 and moved == (reported[(topic, 0)] == 3)
    # the databases it opened are closed again: free for a worker given those partitions
    assert store._dbs == {} and store.opened and all(db.closed for db in store.opened)

    behind = FakeStore({0: 1}, tmp_path / "b")   # recovery reads the rest: left
    (tmp_path / "b").mkdir()
    reset = FakeStore({0: 9, 1: 0}, tmp_path / "r")   # past the true end: left for Faust
    (tmp_path / "r").mkdir()
    assert fence_tables(FakeApp(FakeTable(topic, behind), FakeTable(topic, reset)),
                        settings) == 0
    assert behind.offsets == {0: 1} and reset.offsets == {0: 9, 1: 0}


def test_the_disk_backed_embedded_broker_reports_a_partitions_end(tmp_path):
    """Tansu's ``s3://`` engine answers ListOffsets(latest) from the batch object modified last:
    with LastModified to the second it answered 1 for a partition written 25 times in a second,
    and Faust's recovery trusted it."""
    from streams.embedded.stack import EmbeddedBroker

    broker = EmbeddedBroker(tmp_path, durable=True).start()
    try:
        settings = Settings(broker=broker.url, partitions=1)
        client = admin(settings)
        try:
            client.create_topics([NewTopic("ends", 1, 1)])
        finally:
            client.close()
        out = KafkaProducer(bootstrap_servers=settings.bootstrap_servers(), linger_ms=0)
        for i in range(25):
            out.send("ends", b"v%d" % i, partition=0).get(30)
        out.close()
        reported, true = reported_and_true_ends(settings, [("ends", 0)])
        assert reported == true == {("ends", 0): 25}
    finally:
        broker.stop()


def test_a_store_that_cannot_be_opened_is_left_to_faust_and_the_others_are_fenced(
        backends, tmp_path):
    """Another worker on the same data dir may hold a partition's database: that partition is
    skipped (Faust retries its own open), the start goes on."""
    settings, topic, out = changelog(backends, tmp_path)
    for p in (0, 1):
        for i in range(3):
            out.send(topic, key=b"k%d" % i, value=b"v", partition=p)
    out.flush()
    out.close()

    class Locked(FakeStore):
        def persisted_offset(self, tp) -> int | None:
            if tp.partition == 0:
                raise OSError("IO error: lock hold by current process")
            return super().persisted_offset(tp)

    store = Locked({0: 2, 1: 2}, tmp_path)
    fence_tables(FakeApp(FakeTable(topic, store)), settings)
    reported, _ = reported_and_true_ends(settings, [(topic, 1)])
    assert store.offsets[0] == 2                                # left as it was
    assert store.offsets[1] == min(2, reported[(topic, 1)] - 1)  # fenced as usual
