"""Topic administration and plain Kafka clients (kafka-python), as outside programs use them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.topics import Topics
from streams.settings import Settings

log = logging.getLogger("funnel.topics")


def admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers(),
                            client_id="funnel-admin", request_timeout_ms=30000)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create the contract's topics if missing (``funnel.leads`` compacted)."""
    topics = Topics.from_settings(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = admin(settings)
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot reach the broker {settings.broker}: {exc}") from exc
            time.sleep(0.5)
    try:
        existing = set(client.list_topics())
        new = []
        for name in topics.all():
            if name in existing:
                continue
            configs = {"cleanup.policy": "compact"} if name == topics.leads else {}
            new.append(NewTopic(name, settings.partitions, settings.replication_factor,
                                topic_configs=configs))
        for t in new:
            try:
                client.create_topics([t])
            except TopicAlreadyExistsError:
                pass
    finally:
        client.close()


def producer(settings: Settings, **kw: object) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all",
                         linger_ms=5, client_id="funnel-cli",
                         compression_type=settings.compression_type(), **kw)


def _ends(consumer: KafkaConsumer, tps: list[TopicPartition]
          ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(the end ListOffsets reports, the true end) of each of ``tps``. ListOffsets alone is not
    trusted: some Kafka-compatible brokers (Tansu 0.6) answer the base offset of the last record
    batch + 1 there, so the high watermark of a fetch from just before that point is taken when
    it is higher."""
    reported = consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(reported[tp] - 1, 0))
    for _ in range(3):
        consumer.poll(timeout_ms=200, max_records=10_000)
        if all(consumer.highwater(tp) is not None or reported[tp] == 0 for tp in tps):
            break
    return reported, {tp: max(reported[tp], consumer.highwater(tp) or 0) for tp in tps}


def _partition_ends(settings: Settings, partitions: Callable[[KafkaConsumer], list[TopicPartition]]
                    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """``_ends`` of the partitions ``partitions`` picks once the metadata is known."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers(),
                             enable_auto_commit=False, fetch_max_wait_ms=50,
                             client_id="funnel-offsets")
    try:
        consumer.topics()   # a full metadata refresh, so that every partition is known
        tps = partitions(consumer)
        return _ends(consumer, tps) if tps else ({}, {})
    finally:
        consumer.close()


def reported_and_true_ends(settings: Settings, partitions: list[tuple[str, int]]
                           ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """For each (topic, partition) that exists: the end ListOffsets reports, and the true one
    (keys are ``TopicPartition``s, which equal their ``(topic, partition)`` tuples)."""
    return _partition_ends(settings, lambda c: [
        TopicPartition(t, p) for t, p in partitions if p in (c.partitions_for_topic(t) or ())])


def end_offsets(settings: Settings, topic_names: Iterable[str]) -> dict[TopicPartition, int]:
    return _partition_ends(settings, lambda c: [
        TopicPartition(name, p) for name in topic_names
        for p in c.partitions_for_topic(name) or ()])[1]


def group_lag(settings: Settings, group: str, topic_names: Iterable[str]) -> int:
    """Messages on ``topic_names`` not yet committed by consumer group ``group``."""
    return sum(topic_lags(settings, {name: group for name in topic_names}).values())


def worker_lag(settings: Settings) -> dict[str, int]:
    """Per topic the worker reads (the pipeline's inputs, the projection's topics), the
    messages its consumer group has not committed yet."""
    from streams.topics import Topics

    return topic_lags(settings, Topics.from_settings(settings).group_of(settings))


def topic_lags(settings: Settings, groups: dict[str, str]) -> dict[str, int]:
    """For each topic of ``groups`` (topic -> the consumer group that reads it), the messages
    that group has not committed yet: one consumer for every topic's ends and one OffsetFetch
    per group (an admin client's; neither joins a group). A consumer per topic with an
    OffsetFetch per partition took 1.6 s for the worker's five topics."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers(),
                             enable_auto_commit=False, fetch_max_wait_ms=50,
                             client_id="funnel-lag")
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers(), client_id="funnel-lag")
    try:
        consumer.topics()
        tps = [TopicPartition(name, p) for name in groups
               for p in consumer.partitions_for_topic(name) or ()]
        ends = _ends(consumer, tps)[1] if tps else {}
        committed = {group: admin.list_group_offsets(group).get(group, {})
                     for group in set(groups.values())}
        lags = dict.fromkeys(groups, 0)
        for tp in tps:
            done = committed[groups[tp.topic]].get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else 0
            lags[tp.topic] += max(ends[tp] - offset, 0)
        return lags
    finally:
        consumer.close(autocommit=False)
        admin.close()


def read_all(settings: Settings, topic: str, timeout: float = 3.0) -> list:
    """Every record currently on ``topic`` (for tests, the demo and operators); gives up when
    ``timeout`` seconds pass without a record (a long topic takes as long as it takes: a fixed
    deadline cut a DLQ of 10,000 dead letters short)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers(),
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=int(timeout * 1000), client_id="funnel-reader")
    try:
        consumer.topics()
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
                deadline = time.monotonic() + timeout
        return records
    finally:
        consumer.close()
