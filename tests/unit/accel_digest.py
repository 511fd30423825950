"""``python -m tests.unit.accel_digest``: simulated traffic (events, sales commands, identity
merges) through the worker's pipeline on the simulated cluster of the crash tests, then one line
of JSON: how the core ran (``funnel.accel``) and a SHA-256 over every record the worker wrote
(lead states, histories, snapshots, transitions, handoffs, identity messages), in order.
``tests/unit/test_accel.py`` runs it compiled and as Python and compares the two."""

from __future__ import annotations

import hashlib
import json
import random
import sys
import tempfile
from pathlib import Path

import orjson

from datetime import datetime, timedelta, timezone

from funnel.accel import describe
from funnel.config import load_model
from funnel.timers import next_due, tick
from streams.settings import Settings
from streams.simulate import generate
from streams.worker.store import decode, encode
from tests.unit.sim import STATE, Cluster, Fuse


def run_cluster(leads: int) -> Cluster:
    """The simulated traffic of ``leads`` leads (and a few hostile messages) through the worker."""
    s = Settings(data_dir=Path(tempfile.mkdtemp()), topic_prefix="accel.")
    cluster = Cluster(s.partitions, load_model(), s)
    traffic = generate(leads, 45, seed=11)
    for key, m in traffic.events:
        cluster.publish(s.topic("events"), key, orjson.dumps(m))
    hostile = [b'{"messageId": "h1", "type": "page", "anonymousId": "a\\u0000b", '
               b'"timestamp": "2026-01-01T00:00:00Z"}', b'{"bad', b'[1]',
               orjson.dumps({"messageId": "h2", "type": "track", "event": "x", "userId": "u",
                             "timestamp": "2026-01-01T00:00:00Z", "properties": {"n": 1e300}}),
               orjson.dumps({"messageId": "h3", "type": "page", "userId": "u",
                             "timestamp": "2026-01-01T00:00:00Z",
                             "properties": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}})]
    for value in hostile:   # dead-lettered, each with its reason (``schemas.limits``, ``wire``)
        cluster.publish(s.topic("events"), "u", value)
    for key, c in traffic.commands:
        cluster.publish(s.topic("sales-feedback"), key, orjson.dumps(c))
    cluster.run_worker(random.Random(3), Fuse(None), cache_size=50, max_batch=40)
    return cluster


def main() -> None:
    cluster = run_cluster(600)
    digest, records = hashlib.sha256(), 0
    for (topic, partition), log in sorted(cluster.broker.logs.items()):
        for key, value, headers in log:
            digest.update(repr((topic, partition, key, value, headers)).encode())
            records += 1
    # the periodic pass (cooling, SLA breaches, expired MQLs) on every lead, days later
    model = cluster.model
    for lead_id, raw in sorted(cluster.broker.table(STATE).items()):
        if not lead_id.startswith("\x00"):   # not the checkpoint's markers and journal
            lead = decode(raw)
            for days in (2, 40):
                now = (lead.last_activity_at or datetime(2026, 1, 1, tzinfo=timezone.utc)) \
                    + timedelta(days=days)
                new, moves = tick(lead, now, model)
                digest.update(repr((next_due(lead, model), new.temperature, new.stage,
                                    encode(new), [m.model_dump_json() for m in moves])).encode())
    print(json.dumps({"core": describe(), "records": records, "digest": digest.hexdigest()}))


def leak() -> None:
    """The bytes still allocated after a third replay of simulated traffic through the core and
    the worker's pipeline that were not after the first (all of it dropped each time): a
    reference the compiled code forgets to release shows as growth (mypy 1.13's mypyc leaked
    each ``bytes + bytes``: ~2.6 KB an event, the history line)."""
    import gc
    import tracemalloc

    from tests.bench.sections import core_traffic

    _, replay = core_traffic(300)
    tracemalloc.start()
    sizes = []
    for _ in range(3):   # the core alone, and the worker's pipeline on the simulated cluster
        replay()
        run_cluster(100)
        gc.collect()
        sizes.append(tracemalloc.get_traced_memory()[0])
    print(json.dumps({"core": describe(), "growth": sizes[-1] - sizes[0]}))


if __name__ == "__main__":
    leak() if sys.argv[1:] == ["leak"] else main()
