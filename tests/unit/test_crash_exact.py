"""Crash-exact state and one canonical order, on a simulated cluster (``tests.unit.sim``).

The same messages, read in shuffled order across partitions and topics, by workers killed at
any step of the checkpoint (each send, each changelog record, each acknowledgement), end with
the leads ``funnel backtest``'s replay gives; a version names one state (no lead's version goes
backwards on ``funnel.leads``, and a version re-sent carries the same snapshot); a move re-sent
keeps its id (each lead's transitions form one chain: no move decided twice under two ids).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from funnel.backtest import replay
from funnel.config import load_model
from schemas.commands import parse_command
from schemas.events import parse_event
from streams.settings import Settings
from streams.simulate import generate
from tests.unit.sim import STATE, Cluster
from streams.worker.store import MARKER_PREFIX, decode

MODEL = load_model()
SETTINGS = Settings(broker="kafka://127.0.0.1:1", cooling_interval=0, timer_interval=0)
FIELDS = ("stage", "temperature", "fit_score", "quality", "origin", "events_count", "orders",
          "revenue", "first_seen_at", "last_activity_at", "merged_into")
TRAFFIC = {seed: generate(24, 10, seed) for seed in range(3)}


def published(seed: int) -> tuple[list[tuple[str, str | None, bytes]], list]:
    """The traffic as it is published (topic, key, bytes) and as the backtest reads it."""
    t = TRAFFIC[seed]
    events = [(k, orjson.dumps(m)) for k, m in t.events] + list(t.malformed)
    wire = [("events", k, raw) for k, raw in events]
    wire += [("sales-feedback", k, orjson.dumps(c)) for k, c in t.commands]
    offline = [parse_event(orjson.dumps(m)) for _, m in t.events]
    offline += [parse_command(orjson.dumps(c)) for _, c in t.commands]
    return wire, offline


def view(lead) -> tuple:
    return (*(getattr(lead, f) for f in FIELDS), round(max(lead.interest_raw, 0.0), 6))


def run(seed: int, order: int, crashes: int, partitions: int, cache: int, batch: int):
    cluster = Cluster(partitions, MODEL, SETTINGS)
    wire, offline = published(seed)
    for topic, key, raw in wire:
        cluster.publish(SETTINGS.topic(topic), key, raw)
    killed = cluster.run(random.Random(order), crashes, cache_size=cache, max_batch=batch)
    return cluster, killed, replay(offline, MODEL)


def check(cluster: Cluster, want) -> None:
    b, topics = cluster.broker, cluster.topics
    table = {k: decode(v) for k, v in b.table(STATE).items() if not k.startswith(MARKER_PREFIX)}
    live = {k: view(v) for k, v in table.items()}
    expected = {k: view(v) for k, v in want.leads.items()}
    differ = {k: (live.get(k), expected.get(k)) for k in set(live) | set(expected)
              if live.get(k) != expected.get(k)}
    assert not differ, f"{len(differ)} leads differ live vs replay: {list(differ.items())[:3]}"
    # a version names one state, and never goes backwards on funnel.leads
    seen: dict[tuple[bytes, int], bytes] = {}
    last: dict[bytes, int] = {}
    for _, key, value in b.records(topics.leads):
        version = orjson.loads(value)["version"]
        assert version >= last.get(key, 0), f"{key!r}: version {version} after {last[key]}"
        last[key] = version
        assert seen.setdefault((key, version), value) == value, f"{key!r} v{version} twice"
    assert {k.encode(): v.version for k, v in table.items() if k.encode() in last} == {
        k: v for k, v in last.items() if k.decode() in table}
    # each lead's moves form one chain: a move re-sent kept its id
    moves: dict[str, dict[str, tuple]] = defaultdict(dict)
    for _, key, value in b.records(topics.transitions):
        e = orjson.loads(value)
        if e["type"] == "funnel.lead.transitioned":
            d = e["data"]
            moves[d["lead_id"]][e["id"]] = (d["previous_stage"], d["stage"])
    for lead_id, chain in moves.items():
        steps = [chain[i] for i in sorted(chain, key=lambda i: int(i.rsplit(":", 1)[1]))]
        stage = "iql"
        for frm, to in steps:
            assert frm == stage, f"{lead_id}: moves {steps} (one decided twice?)"
            stage = to
        assert stage == table[lead_id].stage, f"{lead_id}: {steps} but {table[lead_id].stage}"
    for stage in ("mql", "sql", "customer"):
        for _, key, value in b.records(topics.handoff(stage)):
            e = orjson.loads(value)
            assert e["id"] in moves[key.decode()], f"handoff {e['id']} without its move"


@pytest.mark.parametrize("seed", sorted(TRAFFIC))
def test_shuffled_arrival_without_crashes_gives_the_backtest_answer(seed):
    cluster, _, want = run(seed, order=seed + 100, crashes=0, partitions=4, cache=2000, batch=30)
    assert len(want.leads) > 30 and any(v.merged_into for v in want.leads.values())
    check(cluster, want)


@hsettings(max_examples=int(os.environ.get("FUNNEL_SIM_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(TRAFFIC)), order=st.integers(0, 10**6),
       crashes=st.integers(1, 6), partitions=st.sampled_from([1, 3, 4]),
       cache=st.sampled_from([1, 5, 2000]), batch=st.sampled_from([1, 7, 40]))
def test_workers_killed_at_any_step_end_with_the_backtest_answer_and_no_move_twice(
        seed, order, crashes, partitions, cache, batch):
    cluster, killed, want = run(seed, order, crashes, partitions, cache, batch)
    assert 1 <= killed <= crashes
    check(cluster, want)


@pytest.mark.parametrize("seed", sorted(TRAFFIC))
def test_read_in_time_order_as_the_worker_does_no_message_is_forwarded(seed):
    """Read as the worker reads its partitions (``streams.worker.fetch_order``: its own topics
    first, then the record produced first), a linked id's events are all decided before the
    link: none is forwarded to the known lead (each would replay its history), every id comes
    over in its one absorb, and the answer is still the backtest's. Read in a random order, the
    same traffic forwards some."""
    from tests.unit.sim import Fuse

    def kinds(cluster: Cluster) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for _, _, value in cluster.broker.records(cluster.topics.identity):
            out[orjson.loads(value)["kind"]] += 1
        return out

    wire, offline = published(seed)
    ran = {}
    for in_time in (False, True):
        cluster = Cluster(4, MODEL, SETTINGS)
        for topic, key, raw in wire:
            cluster.publish(SETTINGS.topic(topic), key, raw)
        cluster.run_worker(random.Random(seed), Fuse(None), 2000, 30, in_time=in_time)
        check(cluster, replay(offline, MODEL))
        ran[in_time] = kinds(cluster)
    assert ran[False]["forward"] > 0 and ran[True]["forward"] == 0
    assert ran[True]["absorb"] == ran[False]["absorb"] > 0
