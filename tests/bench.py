"""Benchmarks that print figures (never asserted): ``make bench``.

1. The pure core: ``process()`` over simulated traffic, messages per second on one core.
2. The live pipeline: a worker on the embedded stack (or FUNNEL_BROKER/FUNNEL_DATABASE_URL),
   events published up front, time until the worker group and the projection have caught up.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

from funnel.config import load_model
from funnel.decide import new_lead, process
from schemas.events import parse_event
from streams.simulate import generate


def bench_core(leads: int = 3000) -> None:
    model = load_model()
    traffic = generate(leads, 30, seed=1)
    raws = [orjson.dumps(m) for _, m in traffic.events]

    def replay() -> dict:
        state: dict = {}
        for raw in raws:
            e = parse_event(raw)
            lead = state.get(e.lead_key) or new_lead(e.lead_key, model)
            state[e.lead_key], _ = process(lead, e, model)
        return state

    start = time.perf_counter()
    state = replay()
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    replay()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"core: {len(raws)} events for {len(state)} leads in {elapsed:.2f}s = "
          f"{len(raws) / elapsed:,.0f} events/s (parse + process, one core); "
          f"peak traced memory {peak / 1e6:.1f} MB")


def bench_pipeline(leads: int = 3000) -> None:
    from kafka import KafkaProducer

    from streams.runner import spawn_worker, stack, stop_worker, wait_caught_up
    from streams.projection import migrate
    from streams.settings import Settings
    from streams.topics import ensure_topics

    traffic = generate(leads, 30, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(data_dir=Path(tmp), topic_prefix=f"bench{os.getpid()}.")
        with stack(base, echo=lambda *_: None) as s:
            migrate(s.dsn(), s.db_schema)
            ensure_topics(s)
            p = KafkaProducer(bootstrap_servers=s.bootstrap_servers(), linger_ms=20,
                              batch_size=256 * 1024)
            for key, m in traffic.events:
                p.send(s.topic("events"), key=key.encode(), value=orjson.dumps(m))
            p.flush()
            p.close()
            proc = spawn_worker(s, Path(tmp) / "worker.log")
            try:
                start = time.monotonic()
                ok = wait_caught_up(s, timeout=600, proc=proc)
                elapsed = time.monotonic() - start
            finally:
                stop_worker(proc)
            n = len(traffic.events)
            print(f"pipeline: {n} events already on the topic; worker start to caught up "
                  f"(state, handoffs, snapshots, PostgreSQL) in {elapsed:.1f}s = "
                  f"{n / elapsed:,.0f} events/s{'' if ok else ' (TIMED OUT)'}; this includes "
                  f"the consumer group join (~{s.session_timeout / 2:.0f}s)")


if __name__ == "__main__":
    bench_core()
    if "--core-only" not in sys.argv:
        bench_pipeline()
