"""The tables' persisted offsets fenced to the end the broker reports, before Faust compares
them (its ``recovery_consistency_check``).

Faust refuses to start a table whose store's persisted offset is past its changelog partition's
highwater (the end ListOffsets answers, less one), and its recovery moves that offset to the
last record it read. Tansu answers the base offset of a partition's *last record batch* + 1
there. The worker sends each changelog partition's last record alone in its batch
(``streams.worker.batches``), but one killed between two sends leaves a batch of many records
last; a start that recovered it persisted an offset inside that batch, and every start after it
failed (``ConsistencyError``) — funnel up's supervisor called it a crash loop. Here, before Faust
starts, an offset inside a partition's last batch is set back to that batch's base: the store
holds every record up to its offset, so nothing it lacks is skipped. An offset past the
partition's true end (its topic deleted or its broker reset since) is left alone: Faust's check
stops the worker with its message, as it should."""

from __future__ import annotations

import logging
from typing import Any

from streams.settings import Settings

log = logging.getLogger("funnel.worker")


def fenced(persisted: int | None, reported_end: int, true_end: int) -> int | None:
    """The offset to persist instead of ``persisted`` (the last offset the store applied), or
    ``None`` to leave it: ``reported_end`` is what ListOffsets answered, ``true_end`` one past
    the partition's last record."""
    if persisted is None or persisted < reported_end or persisted >= true_end:
        return None
    return reported_end - 1


def fence_tables(app: Any, settings: Settings) -> int:
    """Fence every table partition this worker has a store for; how many were moved."""
    if settings.state_store != "rocksdb":
        return 0
    from faust.types import TP

    from streams.clients import reported_and_true_ends

    stores: dict[TP, Any] = {}
    for table in app.tables.values():
        name = table.changelog_topic.get_topic_name()
        for partition in range(settings.partitions):
            if table.data.partition_path(partition).exists():
                stores[TP(name, partition)] = table.data
    if not stores:
        return 0
    try:
        reported, true = reported_and_true_ends(settings, list(stores))   # TPs are tuples
    except Exception as exc:  # noqa: BLE001  (Faust's own check still runs)
        log.warning("the changelogs' ends could not be read (%s); offsets not fenced", exc)
        return 0
    moved = 0
    for tp, store in stores.items():
        try:
            persisted = store.persisted_offset(tp)
            offset = fenced(persisted, reported.get(tp, 0), true.get(tp, 0))
            if offset is not None:
                log.warning("%s[%s]: stored offset %s lies in the partition's last record "
                            "batch; set back to its base %s (the broker reports that as the "
                            "end)", tp.topic, tp.partition, persisted, offset)
                store.set_persisted_offset(tp, offset)
                moved += 1
        except Exception as exc:  # noqa: BLE001  (e.g. another worker on this data dir holds it)
            log.warning("%s[%s]: stored offset not checked: %s", tp.topic, tp.partition, exc)
        finally:   # closed again: a partition this worker is not given stays free for another
            close_partition(store, tp.partition)
    return moved


def close_partition(store: Any, partition: int) -> None:
    """Close the database of ``partition`` that ``store`` (Faust's ``rocksdb://``) opened: Faust
    opens it again when the partition is assigned to this worker."""
    db = store._dbs.pop(partition, None)
    if db is not None:
        db.close()
