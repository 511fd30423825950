"""One chaos run on a real broker and PostgreSQL: simulated traffic with hostile messages mixed
in, published in chunks while workers are killed (SIGKILL) and started again, and PostgreSQL
perhaps stopped for a while; then the checks, each a list of problems (empty: it held).

- **table == replay**: every lead row is what ``funnel backtest``'s replay of the valid messages
  gives (versions aside: they count changes, and a merge's count depends on timing);
- **one chain of moves per lead**: ``lead_transitions`` never forks (a move decided twice under
  two versions would), and every handoff id names one of its moves;
- **every invalid message dead-lettered** with a reason, and no valid one;
- **no stall**: the group catches up within the time allowed.

Used by ``tests/integration/test_chaos.py`` (fast versions, in ``make test``) and by
``python -m tests.chaos`` (the long runs).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from kafka import KafkaProducer

from funnel.backtest import replay
from funnel.config import load_model
from schemas.costs import parse_interaction
from schemas.events import InteractionEvent
from schemas.wire import InvalidMessage
from streams.clients import read_all
from streams.embedded.runner import spawn_worker, stop_worker, wait_caught_up
from streams.settings import Settings
from streams.simulate import generate
from tests.chaos.hostile import hostile as hostile_messages

COLUMNS = ("lead_id", "stage", "interest_score", "temperature", "fit_score", "quality", "origin",
           "events_count", "orders", "revenue", "first_seen_at", "last_activity_at",
           "merged_into")


@dataclass
class Plan:
    leads: int = 250
    seed: int = 11
    hostile: int = 0
    kills: int = 5            # SIGKILLs of a worker during the stream
    workers: int = 1          # started together
    chunks: int = 12
    pg_outage: float = 0.0    # seconds PostgreSQL is stopped, mid-stream (0: never)
    catch_up: float = 300.0


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    leads: int = 0
    handoffs: int = 0
    dead_letters: int = 0
    kills: int = 0
    seconds: float = 0.0


class Fleet:
    """The workers of one run, each with its own data dir and port (as pods with a volume)."""

    def __init__(self, settings: Settings, tmp: Path, n: int) -> None:
        self.settings, self.tmp = settings, tmp
        self.procs: list = [None] * n
        self.starts = 0

    def start(self, i: int) -> None:
        from streams.embedded.stack import free_port

        self.starts += 1
        s = self.settings.model_copy(update={"data_dir": self.tmp / f"worker-{i}",
                                             "worker_port": free_port()})
        self.procs[i] = spawn_worker(s, self.tmp / f"worker-{i}-{self.starts}.log")

    def kill(self, i: int) -> None:
        self.procs[i].kill()
        self.procs[i].wait(10)

    def stop(self) -> None:
        for p in self.procs:
            if p is not None:
                stop_worker(p)

    def newest_log(self) -> list[str]:
        """The lines of the worker log written last (the projection child writes there too)."""
        logs = sorted(self.tmp.glob("worker-*.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1].read_text(errors="replace").splitlines() if logs else []

    def last_error(self) -> str:
        lines = self.newest_log()
        return next((ln for ln in lines if "Crashed reason" in ln or "Error" in ln), "")[:300]

    def warnings(self, most: int = 12) -> list[str]:
        """The newest log's last warnings and errors: what a stall's report carries, as its logs
        may be gone when it is read (pytest keeps three runs' temporary directories; CI's
        machine none)."""
        return [ln[:240] for ln in self.newest_log() if "WARNING" in ln or "ERROR" in ln][-most:]

    def dead(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is not None]


class Watch:
    """The end offsets of a topic, polled: to kill a worker while it writes a batch."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers(),
                                      enable_auto_commit=False, client_id="funnel-chaos")
        self.tps = [TopicPartition(topic, p) for p in range(settings.partitions)]

    def ends(self) -> int:
        return sum(self.consumer.end_offsets(self.tps).values())

    def moving(self, timeout: float) -> None:
        """Until the topic grows (or ``timeout`` seconds)."""
        start, deadline = self.ends(), time.monotonic() + timeout
        while self.ends() == start and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self.consumer.close()


def traffic(plan: Plan) -> list[tuple[str | None, bytes]]:
    t = generate(plan.leads, 20, plan.seed)
    messages = [(k, orjson.dumps(m)) for k, m in t.events] + list(t.malformed)
    bad = hostile_messages(plan.hostile, plan.seed) if plan.hostile else []
    r = random.Random(plan.seed)
    for msg in bad:   # among the valid ones, in a random place each
        messages.insert(r.randrange(len(messages) + 1), msg)
    return messages


def groups_described(settings: Settings) -> str:
    """The worker's consumer groups as the broker describes them (each one's state and
    members): what a stall's report needs — a group that still holds members of killed
    processes never hands their partitions to the live one."""
    from kafka.admin import KafkaAdminClient

    from streams.topics import Topics

    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers())
    except Exception as exc:  # noqa: BLE001  (a report: say why it is missing)
        return f"groups not described: {exc!r}"
    # Tansu answers authorized operations kafka-python has no name for: left as numbers
    admin._process_acl_operations = lambda result: result
    try:
        groups = sorted(set(Topics.from_settings(settings).group_of(settings).values()))
        described = admin.describe_groups(groups)
        return "; ".join(f"group {g}: {d['group_state']}, {len(d['members'])} member(s) "
                         f"{[m['member_id'] for m in d['members']]}"
                         for g, d in sorted(described.items()))
    except Exception as exc:  # noqa: BLE001
        return f"groups not described: {exc!r}"
    finally:
        admin.close()


def run(settings: Settings, tmp: Path, plan: Plan,
        pg: Callable[[float], None] | None = None) -> Outcome:
    """Publish, kill, restart, catch up, check. ``pg(seconds)`` stops PostgreSQL that long."""
    started = time.monotonic()
    messages = traffic(plan)
    fleet = Fleet(settings, tmp, plan.workers)
    for i in range(plan.workers):   # together: their migrations race too
        fleet.start(i)
    out = Outcome()
    kill_at = set(random.Random(plan.seed).sample(range(1, plan.chunks), min(plan.kills,
                                                                          plan.chunks - 1)))
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all",
                             linger_ms=5, max_request_size=4 * 1024 * 1024)
    positions: list = []
    outputs = Watch(settings, settings.topic("leads"))
    try:
        size = len(messages) // plan.chunks + 1
        for c in range(plan.chunks):
            futures = [producer.send(settings.topic("events"), key=k.encode("utf-8", "surrogatepass") if k else None,
                                     value=raw) for k, raw in messages[c * size:(c + 1) * size]]
            producer.flush()
            positions += [(m.partition, m.offset) for m in (f.get() for f in futures)]
            if c in kill_at:
                victim = out.kills % plan.workers
                outputs.moving(timeout=5)   # in a checkpoint: its outputs are going out
                time.sleep(random.Random(c).uniform(0, 0.05))
                fleet.kill(victim)
                out.kills += 1
                fleet.start(victim)
            if plan.pg_outage and pg is not None and c == plan.chunks // 2:
                _projected(settings)   # the outage mid-stream, not while the worker starts
                pg(plan.pg_outage)
            if fleet.dead():
                break
        producer.close()
        outputs.close()
        deadline = time.monotonic() + plan.catch_up
        while not wait_caught_up(settings, timeout=10):
            if fleet.dead() or time.monotonic() > deadline:
                out.problems.append(f"stalled: not caught up within {plan.catch_up:.0f} s; "
                                    f"{groups_described(settings)} (logs in {tmp})")
                out.problems += [f"  log: {ln}" for ln in fleet.warnings()]
                break
        if fleet.dead():
            out.problems.append(f"worker(s) {fleet.dead()} exited on their own, last log: "
                                f"{fleet.last_error()} (logs in {tmp})")
        check(settings, messages, positions, out)
    finally:
        fleet.stop()
    out.seconds = time.monotonic() - started
    return out


def _projected(settings: Settings, timeout: float = 60.0) -> None:
    """Until the worker has projected its first leads."""
    from tests.integration.conftest import query

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if query(settings, "SELECT count(*) FROM leads")[0][0] > 0:
                return
        except Exception:   # the tables are not there yet
            pass
        time.sleep(0.5)


def check(settings: Settings, messages: list, positions: list, out: Outcome) -> None:
    from tests.integration.conftest import query

    valid, invalid = [], set()
    for (key, raw), pos in zip(messages, positions):
        try:
            m = parse_interaction(raw, settings.max_event_bytes)
        except InvalidMessage:
            invalid.add(pos)
            continue
        if isinstance(m, InteractionEvent):
            valid.append(m)
    want = replay(valid, load_model()).leads
    rows = {r[0]: r for r in query(settings, f"SELECT {', '.join(COLUMNS)} FROM leads")}
    out.leads = len(rows)
    for lead_id in sorted(set(rows) | set(want)):
        got, lead = rows.get(lead_id), want.get(lead_id)
        expected = None if lead is None else (
            lead_id, lead.stage, round(max(lead.interest_raw, 0.0), 3), lead.temperature,
            round(lead.fit_score, 3), lead.quality, lead.origin, lead.events_count, lead.orders,
            round(lead.revenue, 2), lead.first_seen_at, lead.last_activity_at, lead.merged_into)
        actual = None if got is None else (
            got[0], got[1], round(float(got[2]), 3), got[3], round(float(got[4]), 3), *got[5:9],
            round(float(got[9]), 2), *got[10:])
        if actual != expected:
            out.problems.append(f"lead {lead_id}: table {actual} != replay {expected}")
    chains(settings, query, out)
    dead = [r for r in read_all(settings, settings.topic("events.dlq"), timeout=5)
            if dict(r.headers).get("source_topic") == settings.topic("events").encode()]
    out.dead_letters = len(dead)
    lettered = {(int(dict(r.headers)["source_partition"]), int(dict(r.headers)["source_offset"]))
                for r in dead if dict(r.headers).get("error")}
    if invalid - lettered:
        out.problems.append(f"{len(invalid - lettered)} invalid messages not on the DLQ")
    if lettered - invalid:
        sample = [r for r in dead if (int(dict(r.headers)["source_partition"]), int(
            dict(r.headers)["source_offset"])) in lettered - invalid][:3]
        out.problems.append(f"{len(lettered - invalid)} valid messages dead-lettered, e.g. "
                            f"{[dict(r.headers).get('error_detail') for r in sample]}")


def chains(settings: Settings, query: Callable, out: Outcome) -> None:
    """Each lead's moves one chain; each handoff id one of them."""
    moves: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for lead_id, version, frm, to in query(settings, "SELECT lead_id, version, from_stage, "
                                                     "to_stage FROM lead_transitions "
                                                     "ORDER BY lead_id, version"):
        moves[lead_id].append((version, frm, to))
    for lead_id, steps in moves.items():
        for (_, _, to), (v, frm, _) in zip(steps, steps[1:]):
            if frm != to:
                out.problems.append(f"lead {lead_id}: moves fork at v{v}: {steps}")
                break
    ids = {f"{lead}:{v}": to for lead, steps in moves.items() for v, _, to in steps}
    for stage in ("mql", "sql", "customer"):
        for r in read_all(settings, settings.topic(f"handoff.{stage}"), timeout=5):
            e = orjson.loads(r.value)
            out.handoffs += 1
            if ids.get(e["id"]) != stage:
                out.problems.append(f"handoff {e['id']} ({stage}) is not a move of its lead")
