"""The live pipeline side by side with its ceilings, on one broker and the same bytes, in one run.

1. **raw consume**: aiokafka ``getmany`` + ``orjson.loads`` of every message (the transport).
2. **Faust no-op agent**: a Faust agent that only acknowledges each message (the framework).
3. **worker, events taken**: ``funnel worker`` — decided, state and outputs written, offsets
   committed on ``funnel.events``.
4. **worker, end to end**: until the worker group has also caught up on what it wrote for
   itself (identity messages, snapshots into PostgreSQL, spend).

Rates of 2–4 are measured the same way, from outside, by watching the group's committed offsets:
events committed between the first commit seen and the moment nothing is left, divided by that
time (so the consumer group's join is not counted). While it runs, how far the worker is behind
on the topics it writes for itself (identity messages, snapshots for the projection) is sampled
each second: the largest is printed (bounded, not a backlog left for after the events). Then the
worker's memory (RSS), the bytes of
state per lead (the changelog's latest record per lead) and the restart time (SIGTERM a loaded
worker, start it again, time until a new event of an old lead is decided and its snapshot out).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from streams.settings import Settings
from tests.bench.cpu import CpuAccount, children, cpu_seconds, machine_bound, per_event, with_args

CHUNK = 4000   # simulated leads generated (and published) at a time: memory stays flat


def traffic(leads: int, seed: int) -> Iterator[tuple[str, dict]]:
    """The events of ``leads`` simulated people (chunk by chunk, each chunk its own seed)."""
    from streams.simulate import generate

    for start in range(0, leads, CHUNK):
        yield from generate(min(CHUNK, leads - start), 30, seed=seed + start).events


def publish(s: Settings, messages: Iterable[tuple[str, dict]]) -> tuple[int, list[str]]:
    p = KafkaProducer(bootstrap_servers=s.bootstrap_servers(), linger_ms=20,
                      batch_size=512 * 1024, acks=1, compression_type=s.compression_type())
    n, known = 0, []
    for key, m in messages:
        p.send(s.topic("events"), key=key.encode(), value=orjson.dumps(m))
        n += 1
        if m.get("userId") and m.get("type") == "identify" and len(known) < 100:
            known.append(m["userId"])
    p.flush()
    p.close()
    return n, known


def raw_consume(s: Settings, n: int) -> float:
    """Messages per second through aiokafka's ``getmany`` and a JSON decode of each."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as TP

    async def run() -> float:
        c = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers(), enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
        await c.start()
        try:
            tps = [TP(s.topic("events"), p) for p in range(s.partitions)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            seen, first = 0, None
            while seen < n:
                for batch in (await c.getmany(timeout_ms=500, max_records=20_000)).values():
                    first = first or time.perf_counter()
                    for record in batch:
                        orjson.loads(record.value)
                    seen += len(batch)
            return n / (time.perf_counter() - (first or time.perf_counter()))
        finally:
            await c.stop()

    return asyncio.run(run())


class GroupWatch:
    """A consumer group's committed offsets on fixed topic ends, watched from outside."""

    def __init__(self, s: Settings, group: str, topic: str) -> None:
        from streams.clients import end_offsets

        self.admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers())
        self.group = group
        self.ends = end_offsets(s, [topic])
        self.total = sum(self.ends.values())

    def committed(self) -> int:
        try:
            offsets = self.admin.list_group_offsets(self.group).get(self.group, {})
        except Exception:   # the group does not exist yet
            return 0
        return sum(min(offsets[tp].offset, end) for tp, end in self.ends.items()
                   if tp in offsets and offsets[tp].offset >= 0)

    def rate(self, proc: subprocess.Popen, timeout: float,
             probe: Callable[[], dict[str, int]] | None = None,
             at_first: Callable[[], None] | None = None) -> tuple[float, float]:
        """(events/s, the moment of the first commit seen) until everything is committed.
        ``samples`` keeps (events committed, process RSS MB) on the way; ``most`` the largest
        value ``probe()`` gave per key, asked about every two seconds (each probe reads the
        last record batch of every partition probed: this bench shares the worker's two cores);
        ``at_first()`` is called at the first commit seen (``first_n``: the events it held)."""
        first_at, first_n, probed, cpu_at = None, 0, 0.0, 0.0
        self.first_n = 0
        self.samples: list[tuple[int, float]] = []
        self.busy = float("nan")   # CPU seconds the process used per second while it ran
        self.most: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            done, now = self.committed(), time.monotonic()
            self.samples.append((done, rss_mb(proc.pid)[0]))
            if probe is not None and now - probed >= 2.0:
                probed = now
                for key, value in probe().items():
                    self.most[key] = max(self.most.get(key, 0), value)
            if first_at is None and done > 0:
                first_at, first_n, cpu_at = now, done, cpu_seconds(proc.pid)
                self.first_n = first_n
                if at_first is not None:
                    at_first()
            if done >= self.total and first_at is not None:
                self.busy = (cpu_seconds(proc.pid) - cpu_at) / max(now - first_at, 1e-9)
                if done == first_n:   # all of it in the first commit seen: too few to time
                    return float("nan"), first_at
                return (self.total - first_n) / (now - first_at), first_at
            time.sleep(0.2 if first_at is None or now - first_at < 60 else 1.0)
        raise TimeoutError(f"group {self.group} not done after {timeout}s")


def worker_code(s: Settings, leads: int, seed: int) -> float:
    """Events/s of the worker's own code on one core, with no Faust and no broker: the same
    traffic through the same ``Pipeline``, ``Checkpoint`` and ``LeadStore`` (memory state) on the
    simulated cluster of the crash tests (``tests/unit/sim.py``: partitions as lists, identity
    messages fed back, read in time order as the worker reads them; no timers, so no cooling
    pass), with the worker's garbage collector settings."""
    import random

    from funnel.config import load_model
    from tests.bench.sections import timed, worker_gc
    from tests.unit.sim import Cluster, Fuse

    cluster = Cluster(s.partitions, load_model(), s)
    n = 0
    for key, m in traffic(leads, seed):
        cluster.publish(s.topic("events"), key, orjson.dumps(m))
        n += 1
    with worker_gc():
        return n / timed(lambda: cluster.run_worker(random.Random(7), Fuse(None), s.state_cache,
                                                    s.flush_max_events, in_time=True))


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def memory_slope(samples: list[tuple[int, float]], n: int, ids: int, since: float = 0.25
                 ) -> float:
    """KB of RSS per lead id between ``since`` of the events committed (a quarter) and the end
    (lead ids taken as proportional to events: the simulated leads come one after another)."""
    quarter = next(((done, rss) for done, rss in samples if done >= n * since), samples[0])
    end_done, end_rss = samples[-1]
    leads = (end_done - quarter[0]) / max(n, 1) * ids
    return (end_rss - quarter[1]) * 1024 / max(leads, 1)


def state_bytes(s: Settings) -> tuple[int, float]:
    """(lead ids, mean bytes) of the latest changelog record per lead (its history, in a table
    of its own, not counted; nor the checkpoint's markers and journal: keys no lead has). The
    ids are the projection's rows (one per lead id, caught up); the mean is the leads' of the
    changelog's first partition, a sample: the changelog keeps every version (the embedded
    broker does not compact) and reading all of it took ~12 minutes at a million leads."""
    from streams.worker.store import MARKER_PREFIX
    from tests.integration.conftest import query

    ids = query(s, "SELECT count(*) FROM leads")[0][0]
    topic = f"{s.app_id}-lead-state-changelog"
    c = KafkaConsumer(bootstrap_servers=s.bootstrap_servers(), enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=3000)
    tps = [TopicPartition(topic, 0)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    sizes: dict[str, int] = {}
    for record in c:   # the table's keys are JSON strings (Faust's key serializer)
        key = orjson.loads(record.key) if record.key else None
        if isinstance(key, str) and not key.startswith(MARKER_PREFIX):
            sizes[key] = len(record.value or b"")
    c.close()
    return ids, (sum(sizes.values()) / len(sizes) if sizes else 0.0)


def restart(s: Settings, proc: subprocess.Popen, lead_id: str, log: Path) -> tuple[float, object]:
    """Stop the worker, start it again, and time until a new event of ``lead_id`` is decided
    (its snapshot is on ``funnel.leads``). Returns (seconds, the new worker process)."""
    from streams.embedded.runner import spawn_worker, stop_worker

    stop_worker(proc, timeout=60)
    c = KafkaConsumer(bootstrap_servers=s.bootstrap_servers(), enable_auto_commit=False)
    tps = [TopicPartition(s.topic("leads"), p) for p in c.partitions_for_topic(s.topic("leads"))]
    c.assign(tps)
    c.seek_to_end(*tps)
    started = time.monotonic()
    new = spawn_worker(s, log)
    marker = "2027-06-01T00:00:00Z"
    publish(s, [(lead_id, {"type": "page", "messageId": f"bench-restart-{os.getpid()}",
                           "userId": lead_id, "timestamp": marker,
                           "properties": {"path": "/pricing"}})])
    while time.monotonic() - started < 600:
        for batch in c.poll(timeout_ms=200).values():
            for r in batch:
                if r.key == lead_id.encode() and b"2027-06-01T00:00:00" in r.value:
                    c.close()
                    return time.monotonic() - started, new
    c.close()
    raise TimeoutError("the restarted worker did not decide the new event")


def worker_counters(s: Settings) -> dict[str, float]:
    """Counters of the running worker's ``/metrics``, by series (``name{labels}``); empty when
    it does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.worker_port}/metrics",
                                    timeout=5) as page:
            text = page.read().decode()
    except OSError:
        return {}
    series = (line.rsplit(" ", 1) for line in text.splitlines()
              if line.startswith("funnel_") and "_total" in line)
    return {name: float(value) for name, value in series}


def broker_rss() -> float:
    """MB resident in the embedded broker (Tansu) of this bench: what its topics hold."""
    return sum(rss_mb(pid)[0] for pid in with_args("broker --listener-url"))


def ceiling_rates(s: Settings, leads: int, tmp: str, timeout: float
                  ) -> tuple[tuple[float, float], float, float]:
    """(the Faust no-op agent's events/s on the same topic and its CPU an event, the events/s
    on the worker's path — fetched messages handed over into an inbox taken in batches
    (``streams.worker.faust_inbox``) — and the worker's own code's)."""
    return (noop_rate(s, tmp, timeout, "noop"), noop_rate(s, tmp, timeout, "noop-deliver")[0],
            worker_code(s, leads, seed=20))


def noop_rate(s: Settings, tmp: str, timeout: float, name: str) -> tuple[float, float]:
    """(events/s, µs of CPU an event) of a Faust no-op agent reading the events topic in a group
    of its own (``name``: ``noop…``; ``…-deliver`` on the worker's path)."""
    from streams.embedded.runner import stop_worker, worker_env

    group = f"{s.topic_prefix}{name}"
    noop = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.noop", s.broker or "", s.topic("events"), group,
         str(s.partitions)] + (["--deliver"] if name.endswith("-deliver") else []),
        env=worker_env(s), stdin=subprocess.DEVNULL,
        stdout=open(Path(tmp) / f"{group}.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        watch = GroupWatch(s, group, s.topic("events"))
        rate = watch.rate(noop, timeout)[0]
        return rate, watch.busy / rate * 1e6
    finally:
        stop_worker(noop)


def bench_pipeline(leads: int = 16000, storage: str = "memory", timeout: float = 3600,
                   ceilings: bool = True) -> None:
    """``ceilings``: also the Faust no-op agent and the worker's own code on the same traffic
    (off for the scale run: at a million leads they would add ~40 minutes)."""
    from streams.clients import ensure_topics, topic_lags, worker_lag
    from streams.topics import Topics
    from streams.db.migrate import migrate
    from streams.embedded.runner import spawn_worker, stack, stop_worker, worker_env

    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(data_dir=Path(tmp), topic_prefix=f"bench{os.getpid()}.",
                        embedded_storage=storage)  # type: ignore[arg-type]
        with stack(base, echo=lambda *_: None) as s:
            migrate(s.dsn(), s.db_schema)
            ensure_topics(s)
            t0 = time.monotonic()
            n, known = publish(s, traffic(leads, seed=20))
            print(f"pipeline bench: {leads:,} simulated leads, {n:,} events on the {storage} "
                  f"embedded broker (published in {time.monotonic() - t0:.0f}s)", flush=True)
            raw = raw_consume(s, n)
            timeout = max(timeout, n / 200)   # the scale run: ~6.8 M events
            noop = noop_again = delivered = own_code = noop_cpu = noop_cpu_again = float("nan")
            if ceilings:
                (noop, noop_cpu), delivered, own_code = ceiling_rates(s, leads, tmp, timeout)
            proc = spawn_worker(s, Path(tmp) / "worker.log")
            try:
                watch = GroupWatch(s, s.app_id, s.topic("events"))
                own = (s.topic("identity"), s.topic("leads"))
                groups = Topics.from_settings(s).group_of(s)
                account = CpuAccount(proc.pid, Path(tmp) / "pg")
                taken, first_at = watch.rate(proc, timeout, probe=lambda: topic_lags(
                    s, {t: groups[t] for t in own}), at_first=account.start)
                taken_at = time.monotonic()
                while sum(worker_lag(s).values()) > 0:
                    if time.monotonic() - first_at > timeout or proc.poll() is not None:
                        raise RuntimeError("the worker did not catch up")
                    time.sleep(0.05)
                end_to_end = n / (time.monotonic() - first_at)
                used = account.stop()
                tail = time.monotonic() - taken_at
                rss, peak = rss_mb(proc.pid)
                projection_rss = sum(rss_mb(child)[0] for child in children(proc.pid))
                broker = broker_rss()
                ids, mean = state_bytes(s)
                slope = memory_slope(watch.samples, n, ids)
                late = memory_slope(watch.samples, n, ids, since=0.5)
                counters = worker_counters(s)
                seconds, proc = restart(s, proc, known[0], Path(tmp) / "worker2.log")
            finally:
                stop_worker(proc, timeout=60)
            if ceilings:   # the yardstick again, minutes later: how much it moves by itself
                noop_again, noop_cpu_again = noop_rate(s, tmp, timeout, "noop-again")
    print(f"  raw aiokafka getmany + JSON    {raw:>10,.0f} events/s")
    if ceilings:
        print(f"  Faust no-op agent              {noop:>10,.0f} events/s   (1.00×; run again "
              f"after the worker: {noop_again:,.0f}, {noop_again / noop:.2f}× — the yardstick's "
              f"own noise)")
        print(f"  the same, the worker's path    {delivered:>10,.0f} events/s   "
              f"({delivered / noop:.2f}×: Faust's fetch and commit, no stream: "
              f"messages handed over into an inbox, taken in batches)")
        ceiling = 1 / (1 / delivered + 1 / own_code)   # the worker's Faust share: the hand-over's
        print(f"  worker's own code, no Faust    {own_code:>10,.0f} events/s   "
              f"({1e6 / own_code:,.0f} µs an event on one core, simulated broker; with the "
              f"worker path's no-op {1e6 / delivered:,.0f} µs: at most {ceiling:,.0f} events/s = "
              f"{ceiling / noop:.2f}× the stock no-op for one process)")
    versus = (lambda rate: f"{rate / noop:.2f}× the no-op agent") if ceilings else \
        (lambda rate: "no ceilings measured in the scale run")
    print(f"  worker, events taken           {taken:>10,.0f} events/s   ({versus(taken)}; its "
          f"process used {watch.busy:.0%} of a core meanwhile: {watch.busy / taken * 1e6:,.0f} µs "
          f"of CPU an event, the figure to compare between runs of a busy machine)")
    print(f"  worker, end to end             {end_to_end:>10,.0f} events/s   "
          f"({versus(end_to_end)}; state, outputs, PostgreSQL)")
    print(f"  CPU an event from the first commit until all was done: "
          f"{machine_bound(used, n - watch.first_n)}")
    if ceilings:
        worker_cpu = per_event(used, n - watch.first_n)["worker"]
        print(f"  the no-op agent's process: {noop_cpu:,.0f} µs of CPU an event "
              f"({noop_cpu_again:,.0f} run again); the worker's "
              f"{worker_cpu:,.0f} = {noop_cpu / worker_cpu:.2f}× the no-op's rate at "
              f"equal CPU (a ratio the machine's other tenants move less than the rates')")
    print(f"  behind on its own topics while it ran (most seen, sampled every two seconds): "
          f"{watch.most.get(own[0], 0):,} identity messages, {watch.most.get(own[1], 0):,} "
          f"snapshots; all of it done {tail:.1f}s after the last event was committed")
    merges, forwards, rereads = (counters.get(k, 0.0) for k in (
        'funnel_identity_total{step="merge"}', 'funnel_identity_total{step="forward"}',
        "funnel_partitions_reread_total"))
    if counters:
        print(f"  identity: {merges:,.0f} merges and {forwards:,.0f} forwards (each replays the "
              f"lead's history); partitions read again after FUNNEL_REREAD_SECONDS without "
              f"progress: {rereads:,.0f}")
    else:
        print("  identity merges and forwards, partitions read again: not known (the worker's "
              "/metrics did not answer within 5 s)")
    print(f"  worker RSS {rss:,.0f} MB (peak {peak:,.0f} MB) for {ids:,} lead ids = "
          f"{rss * 1024 / max(ids, 1):.1f} KB per lead id in all (the projection process: "
          f"{projection_rss:,.0f} MB more); slope {slope:.2f} KB per "
          f"lead id from a quarter of the events to the end, {late:.2f} from half; state "
          f"{mean:,.0f} bytes per lead (changelog, latest record; the first partition's leads); "
          f"the embedded broker held {broker:,.0f} MB")
    print(f"  restart (SIGTERM a loaded worker, start it): first new decision after "
          f"{seconds:.1f}s")
