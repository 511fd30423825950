"""Benchmarks of the parts: the pure core, ``funnel learn`` and the HTTP collector.

1. The pure core: ``process()`` over simulated traffic, messages per second on one core.
2. The HTTP collector: concurrent clients posting Segment batches; events/s acknowledged by
   the broker (each answer is 200 only after acks=all).
3. ``funnel learn``: labelled rows built from a simulated history (replay + features) per
   second, and the fit alone on 100,000 labelled rows.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from funnel import accel
from funnel.config import load_model
from funnel.decide import new_lead, process
from schemas.events import parse_event
from streams.embedded.runner import collect_less
from streams.simulate import generate


@contextlib.contextmanager
def worker_gc() -> Iterator[None]:
    """The worker's garbage collector settings (``collect_less``) for a while, then Python's."""
    thresholds = gc.get_threshold()
    collect_less()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def core_traffic(leads: int) -> tuple[list[bytes], Callable[..., dict]]:
    """The simulated events of ``leads`` leads as bytes, and their replay (parse + process):
    ``replay(events=all of them, state=a new one)`` returns the state."""
    model = load_model()
    traffic = generate(leads, 30, seed=1)
    raws = [orjson.dumps(m) for _, m in traffic.events]

    def replay(events: list[bytes] = raws, state: dict | None = None) -> dict:
        state = {} if state is None else state
        for raw in events:
            e = parse_event(raw)
            lead = state.get(e.lead_key) or new_lead(e.lead_key, model)
            state[e.lead_key], _ = process(lead, e, model)
        return state
    return raws, replay


def core_rate(leads: int = 3000, runs: int = 5, chunk: int = 500) -> float:
    """Events/s of the core's replay with the worker's garbage collector settings: each run
    timed ``chunk`` events at a time, and the fastest time of each chunk over ``runs`` runs
    summed (a noisy neighbour's pause spoils a chunk of one run, not the figure)."""
    raws, replay = core_traffic(leads)
    chunks = [raws[i:i + chunk] for i in range(0, len(raws), chunk)]
    best = [float("inf")] * len(chunks)
    with worker_gc():
        for run in range(runs + 1):   # the first run warms the model's caches
            state: dict = {}
            for i, part in enumerate(chunks):
                start = time.perf_counter()
                replay(part, state)
                if run:
                    best[i] = min(best[i], time.perf_counter() - start)
    return len(raws) / sum(best)


def bench_core(leads: int = 3000) -> None:
    raws, replay = core_traffic(leads)

    start = time.perf_counter()
    state = replay()
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    replay()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    warm = timed(replay)   # the model's caches filled, as in a long replay
    with worker_gc():
        tuned = timed(replay)
    print(f"core: {len(raws)} events for {len(state)} leads in {elapsed:.2f}s = "
          f"{len(raws) / elapsed:,.0f} events/s (parse + process, one core); run again: "
          f"{len(raws) / warm:,.0f}, and {len(raws) / tuned:,.0f} with the worker's garbage "
          f"collector settings; "
          f"peak traced memory {peak / 1e6:.1f} MB")
    # the compiled core (``funnel.accel``) and the Python one, side by side, in turn twice
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(2):
        for switch in rates:
            out = subprocess.run([sys.executable, "-c", "from tests.bench.sections import "
                                  "core_rate; print(core_rate())"], capture_output=True, text=True,
                                 env={**os.environ, "FUNNEL_ACCEL": switch}, check=True)
            rates[switch].append(float(out.stdout.split()[-1]))
    compiled, python = max(rates["on"]), max(rates["off"])
    print(f"core compiled (mypyc, funnel.accel) {compiled:,.0f} events/s, as Python "
          f"{python:,.0f}: {compiled / python:.2f}× (the fastest of 5 runs for each 500 events, "
          f"summed; each twice, in turn; the figures above: this process's core "
          f"{accel.describe().removeprefix('runs ')})")


def bench_collector(clients: int = 8, batches: int = 150, batch_size: int = 100) -> None:
    import asyncio

    import aiohttp
    from pydantic import SecretStr

    from streams.embedded.runner import spawn_collector, stack, stop_worker
    from streams.settings import Settings
    from streams.embedded.stack import free_port
    from streams.clients import ensure_topics

    traffic = generate(2000, 30, seed=3)
    messages = [m for _, m in traffic.events]
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(data_dir=Path(tmp), topic_prefix=f"benchc{os.getpid()}.",
                        http_port=free_port(), write_keys=SecretStr("bench"))
        with stack(base, echo=lambda *_: None) as s:
            ensure_topics(s)
            proc = spawn_collector(s, Path(tmp) / "collector.log")
            url = f"http://127.0.0.1:{s.http_port}/v1/batch"

            async def client(n: int, session: aiohttp.ClientSession) -> tuple[int, int]:
                sent = bad = 0
                for b in range(batches):
                    start = ((n * batches + b) * batch_size) % max(len(messages) - batch_size, 1)
                    body = orjson.dumps({"batch": messages[start:start + batch_size]})
                    async with session.post(url, data=body, headers={
                            "Content-Type": "application/json",
                            "Authorization": "Basic " + base64.b64encode(b"bench:").decode()}) as r:
                        await r.read()
                        sent, bad = (sent + batch_size, bad) if r.status == 200 else (sent, bad + 1)
                return sent, bad

            async def run() -> tuple[int, int, float]:
                async with aiohttp.ClientSession() as session:
                    t0 = time.perf_counter()
                    results = await asyncio.gather(*(client(i, session) for i in range(clients)))
                    return (sum(r[0] for r in results), sum(r[1] for r in results),
                            time.perf_counter() - t0)

            try:
                sent, bad, elapsed = asyncio.run(run())
            finally:
                stop_worker(proc)
            print(f"collector: {clients} clients posted {clients * batches} batches of "
                  f"{batch_size}: {sent:,} events acknowledged in {elapsed:.1f}s = "
                  f"{sent / elapsed:,.0f} events/s ({bad} requests refused)")


def bench_learn(leads: int = 6000) -> None:
    import numpy as np

    from funnel.candidate import learn
    from funnel.fitting import fit
    from funnel.learn import feature_names
    from tests.unit.helpers import simulated_history

    msgs, _ = simulated_history(leads, seed=2)
    started = time.perf_counter()
    learned = learn(msgs, load_model())
    elapsed = time.perf_counter() - started
    rows = learned.report["rows"]
    names = feature_names(load_model())
    rng = np.random.default_rng(0)
    x = rng.poisson(0.5, (100_000, len(names))).astype(float)
    y = (rng.random(100_000) < 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 3])))).astype(int)
    fit_started = time.perf_counter()
    fit(x, y, names)
    fit_s = time.perf_counter() - fit_started
    print(f"learn: {len(msgs):,} messages, {rows:,} labelled leads in {elapsed:.1f}s "
          f"({rows / elapsed:,.0f} labelled leads/s incl. the replay; 100,000 labelled leads "
          f"≈ {100_000 / rows * elapsed / 60:.1f} min); the fit alone on 100,000 rows: {fit_s:.1f}s")
