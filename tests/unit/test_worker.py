"""The worker's Faust-free parts with plain fakes: a dict as the table, a list as the producer.

Each message goes the one way: decode (schemas) → route → decide (funnel) → emit → checkpoint.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import pytest

from funnel.config import load_model
from funnel.decide import new_lead, process
from schemas.identity import MAX_HOPS, Absorb, Forward, Link, parse_identity
from schemas.lead import LeadSnapshot
from streams.settings import Settings
from streams.topics import Topics
from streams.worker.checkpoint import MARKER_KEY, Checkpoint, WriteBehind
from streams.records import Record, Source
from streams.worker.pipeline import Pipeline
from streams.worker.schedule import DeadlineSchedule
from streams.worker.sink import BatchingSink
from streams.worker.store import LeadStore, MemoryState, batch_of, decode, encode
from tests.unit.helpers import GOOD_TRAITS, T0, at, command, event, identify

MODEL = load_model()
SETTINGS = Settings(broker="kafka://127.0.0.1:1", cooling_interval=0, timer_interval=30)
TOPICS = Topics.from_settings(SETTINGS)


def pipeline(table: dict[str, bytes] | None = None) -> Pipeline:
    return Pipeline(LeadStore({} if table is None else table, MODEL), SETTINGS, MODEL, TOPICS)


def source(value: Any, key: str | None, topic: str = TOPICS.events, partition: int = 0,
           offset: int = 0) -> Source:
    raw = value if isinstance(value, (bytes, type(None))) else (
        value.model_dump_json(by_alias=True).encode() if hasattr(value, "model_dump_json")
        else orjson.dumps(value))
    return Source(topic, partition, offset, key.encode() if key else None, raw)


def on(records: list[Record], topic: str) -> list[Record]:
    return [r for r in records if r.topic == topic]


def header(record: Record, name: str) -> str:
    return dict(record.headers)[name].decode()


def test_an_event_is_decided_at_once_and_written_behind_as_a_snapshot_and_a_state():
    p = pipeline()
    p.apply(source(identify(lead="u-1"), "u-1"))
    assert p.store.load("u-1", 0).traits["email"] == GOOD_TRAITS["email"]
    records, state = p.drain()
    snaps = [LeadSnapshot.model_validate_json(r.value) for r in on(records, TOPICS.leads)]
    assert [s.lead_id for s in snaps] == ["u-1"] and snaps[0].quality == "high"
    assert set(state) == {"u-1"} and state["u-1"][0] == 0
    assert p.drain() == ([], {}), "a drained batch leaves nothing behind"


def test_snapshots_and_lead_events_are_written_from_the_lead_without_a_snapshot_model(
        monkeypatch):
    from funnel.model import Lead

    built: list[str] = []
    original = Lead.snapshot

    def counted(self: Lead, half_life: float | None = None) -> LeadSnapshot:
        built.append(self.lead_id)
        return original(self, half_life)

    monkeypatch.setattr(Lead, "snapshot", counted)
    p = pipeline()
    p.apply(source(identify(lead="u-1"), "u-1"))
    records, _ = p.drain()
    assert not on(records, TOPICS.transitions) and on(records, TOPICS.leads)
    p.apply(source(event(name="Demo Requested", lead="u-1"), "u-1", offset=1))
    records, _ = p.drain()
    moves = on(records, TOPICS.transitions)
    assert moves and on(records, TOPICS.handoff("mql")), "the demo request moved the lead"
    assert built == []   # neither the snapshots nor the events built a LeadSnapshot
    lead = p.store.load("u-1", 0)
    snap = original(lead, MODEL.interest.half_life_days)
    assert on(records, TOPICS.leads)[-1].value == snap.model_dump_json().encode()
    last = orjson.loads(moves[-1].value)
    assert last["id"] == f"u-1:{lead.version}" and last["data"]["interest_score"] \
        == snap.interest_score and last["data"]["traits"] == snap.traits


def test_the_periodic_pass_goes_in_steps_and_a_lead_whose_tick_fails_ends_nothing():
    cooling = Settings(broker="kafka://127.0.0.1:1", cooling_interval=60, timer_interval=0)
    p = Pipeline(LeadStore({}, MODEL), cooling, MODEL, TOPICS)
    leads = [f"u-{i}" for i in range(7)]
    for i, lead in enumerate(leads):
        p.apply(source(event(name="Demo Requested", lead=lead), lead, offset=i))
    p.drain()
    assert {p.store.load(lead, 0).temperature for lead in leads} == {"warm"}
    # a lead the pass cannot handle (its score's time is not a time: ``tick`` raises)
    p.store.load("u-3", 0).interest_at = "not a time"   # type: ignore[assignment]
    later = T0 + timedelta(days=120)
    steps = []
    more = True
    while more:
        changed, more = p.timer_pass(later, {0}, limit=3)
        steps.append(changed)
    assert steps == [3, 2, 1]   # 3 leads a step; u-3 (second step) failed and was left out
    cooled = {lead for lead in leads if p.store.load(lead, 0).temperature != "warm"}
    assert cooled == set(leads) - {"u-3"}
    assert p.timer_pass(later, {0}, limit=3) == (0, False)   # nothing due any more


def test_the_same_message_twice_changes_nothing_the_second_time():
    p = pipeline()
    e = event(name="Content Downloaded", lead="u-1")
    p.apply(source(e, "u-1"))
    p.drain()
    p.apply(source(e, "u-1", offset=1))
    assert p.drain() == ([], {})


def test_bytes_that_are_not_json_go_to_the_dlq_with_the_reason_and_where_they_came_from():
    p = pipeline()
    p.apply(source(b"not json {", "k", partition=3, offset=41))
    (dead,) = on(p.drain()[0], TOPICS.dlq)
    assert dead.value == b"not json {" and dead.key == b"k"
    assert header(dead, "error") == "invalid_json"
    assert (header(dead, "source_topic"), header(dead, "source_partition"),
            header(dead, "source_offset")) == (TOPICS.events, "3", "41")
    assert p.metrics.dead_letters.labels("invalid_json")._value.get() == 1


def test_a_message_keyed_by_something_else_goes_back_to_its_topic_under_the_lead_key():
    p = pipeline()
    p.apply(source(event(name="Content Downloaded", lead="u-7"), "wrong-key"))
    records, state = p.drain()
    assert [(r.topic, r.key) for r in records] == [(TOPICS.events, b"u-7")] and state == {}


def test_a_spend_report_goes_to_the_costs_topic_not_to_a_lead():
    p = pipeline()
    spend = event(name="Ad Spend Reported", lead="ads-google",
                  properties={"campaign": "q4", "period": "2026-11", "amount": 100,
                              "currency": "USD"})
    p.apply(source(spend, "ads-google"))
    records, state = p.drain()
    assert [r.topic for r in records] == [TOPICS.costs] and state == {}
    assert orjson.loads(records[0].value)["campaign"] == "q4"


def test_a_refused_command_is_dead_lettered_and_changes_nothing():
    p = pipeline()
    p.apply(source(command("won", lead="u-1", amount=10.0), "u-1", topic=TOPICS.feedback))
    records, state = p.drain()
    assert [header(r, "error") for r in records] == ["command_refused"] and state == {}


def test_whatever_a_handler_raises_becomes_a_processing_error_dead_letter():
    p = pipeline()

    def broken(message: Any, src: Source) -> None:
        raise RuntimeError("boom")

    p.router.handlers[type(identify())] = broken
    p.apply(source(identify(lead="u-1"), "u-1"))
    (dead,) = p.drain()[0]
    assert header(dead, "error") == "processing_error" and "boom" in header(dead, "error_detail")


def test_identity_link_absorb_forward_merge_an_anonymous_visitor_into_the_known_lead():
    p = pipeline()
    # the anonymous visitor downloads something; then the known lead identifies with that id
    p.apply(source(event(name="Content Downloaded", lead=None, anonymousId="a-1", when=at(1)),
                   "a-1", partition=1))
    p.apply(source(identify(lead="u-1", anonymousId="a-1", when=at(5)), "u-1"))
    links = on(p.drain()[0], TOPICS.identity)
    assert [r.key for r in links] == [b"a-1"]
    link = parse_identity(links[0].value)
    assert isinstance(link, Link) and (link.from_, link.into) == ("a-1", "u-1")
    # the link reaches a-1's partition: a-1 is merged and its history goes to u-1
    p.apply(source(links[0].value, "a-1", topic=TOPICS.identity, partition=1))
    (absorb_rec,) = on(p.drain()[0], TOPICS.identity)
    absorb = parse_identity(absorb_rec.value)
    assert isinstance(absorb, Absorb) and len(absorb.items) == 1
    assert p.store.load("a-1", 1).merged_into == "u-1"
    # u-1 replays it: the download counts for the known lead
    before = p.store.load("u-1", 0).interest_raw
    p.apply(source(absorb_rec.value, "u-1", topic=TOPICS.identity))
    merged = p.store.load("u-1", 0)
    assert merged.interest_raw > before and "a-1" in merged.merged_from
    p.drain()
    # a later message under the merged id is forwarded to the known lead
    p.apply(source(event(name="Webinar Attended", lead=None, anonymousId="a-1", when=at(9)),
                   "a-1", partition=1))
    (fwd_rec,) = on(p.drain()[0], TOPICS.identity)
    fwd = parse_identity(fwd_rec.value)
    assert isinstance(fwd, Forward) and fwd.into == "u-1" and fwd.hops == 1


def test_an_identity_chain_longer_than_the_hop_limit_is_dead_lettered():
    table = {"u-2": new_lead("u-2", MODEL).model_copy(update={"merged_into": "u-3"})
             .model_dump_json().encode()}
    p = pipeline(table)
    looping = Absorb.model_validate({"from": "a-9", "into": "u-2", "hops": MAX_HOPS})
    p.apply(source(looping, "u-2", topic=TOPICS.identity))
    (dead,) = p.drain()[0]
    assert header(dead, "error") == "identity_loop"
    shorter = Absorb.model_validate({"from": "a-9", "into": "u-2", "hops": 1})
    p.apply(source(shorter, "u-2", topic=TOPICS.identity))
    (followed,) = p.drain()[0]
    nxt = parse_identity(followed.value)
    assert followed.key == b"u-3" and nxt.into == "u-3" and nxt.hops == 2


def test_an_invalid_identity_message_is_dead_lettered_with_its_reason():
    p = pipeline()
    p.apply(source({"kind": "teleport", "from": "a", "into": "b"}, "a", topic=TOPICS.identity))
    (dead,) = p.drain()[0]
    assert header(dead, "error") == "invalid_identity_message"


def test_the_store_prefers_cached_state_over_the_table_and_forgets_revoked_partitions():
    lead, _ = process(new_lead("u-1", MODEL), identify(lead="u-1"), MODEL)
    store = LeadStore({"u-1": encode(lead)}, MODEL)
    assert store.load("u-1", 0).traits == lead.traits
    newer = lead.model_copy(update={"version": 99})
    store.keep(newer, 0)
    assert store.load("u-1", 0).version == 99
    store.forget({0})
    assert store.load("u-1", 0).version == lead.version
    assert store.load("nobody", 0).version == 0


def test_the_store_keeps_a_bounded_cache_and_never_drops_a_lead_before_it_is_written():
    table: dict[str, bytes] = {}
    store = LeadStore(table, MODEL, cache_size=100)
    for i in range(250):
        store.keep(new_lead(f"u-{i}", MODEL).model_copy(update={"version": 1}), i % 2)
    store.trim()
    assert len(store.cache) == 250            # all dirty: none may go before the checkpoint
    for lead_id, (p, lead) in store.take_dirty().items():
        store.state.put(p, lead_id, encode(lead))
    store.trim()
    assert len(store.cache) == 100 and "u-249" in store.cache and "u-0" not in store.cache
    assert store.load("u-0", 0).version == 1      # read back from the table's bytes
    assert sorted(store.keys(1))[:2] == ["u-1", "u-101"]


def heavy_lead(lead_id: str, messages: int):
    lead = new_lead(lead_id, MODEL)
    for i in range(messages):
        lead, _ = process(lead, event(name="Content Downloaded", lead=lead_id,
                                      when=T0 + timedelta(hours=i), properties={"n": i}), MODEL)
    return lead


def test_the_cache_is_bounded_in_bytes_too_and_its_estimate_is_near_a_leads_real_memory():
    import gc
    import tracemalloc

    from funnel.history import History
    from streams.worker.store import lead_memory

    for lead in (heavy_lead("u-1", 1), heavy_lead("u-20", 20), heavy_lead("u-h", 200)):  # against a
        raw, blob = encode(lead), lead.history.encode()   # lead decoded for real
        gc.collect()
        tracemalloc.start()
        back = decode(raw)
        back.history = History.decode(blob)
        real, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert 0.7 < lead_memory(len(raw), back) / real < 1.3, (lead.lead_id, real)

    heavy = heavy_lead("h-0", 200)
    small = heavy_lead("s-0", 2)
    table: dict[str, bytes] = {}
    budget = 40 * lead_memory(len(encode(small)), small)
    store = LeadStore(table, MODEL, cache_size=1000, cache_bytes=budget)

    def checkpoint():
        for lead_id, (p, lead) in store.take_dirty().items():
            store.state.put(p, lead_id, encode(lead))   # as the changelog writes it
        store.trim()

    for i in range(3):
        store.keep(heavy.model_copy(update={"lead_id": f"h-{i}"}), 0)
    store.trim()
    assert len(store.cache) == 3   # all dirty: none may go before the checkpoint
    for i in range(60):
        store.keep(small.model_copy(update={"lead_id": f"s-{i}"}), 1)
    checkpoint()
    # the heavy leads were used longest ago: out first, until the rest fits
    assert store.held <= budget and not any(f"h-{i}" in store.cache for i in range(3))
    assert 30 <= len(store.cache) <= 40 and "s-59" in store.cache and "s-0" not in store.cache
    assert store.held == sum(store.memory[k] for k in store.cache)
    assert store.load("h-1", 0).version == heavy.version   # read back from the table's bytes
    store.forget({1})
    assert store.held == 0 and not store.cache


def test_a_lead_record_is_compact_versioned_without_its_history_and_old_records_decode():
    lead, _ = process(new_lead("u-1", MODEL), identify(lead="u-1"), MODEL)
    record = encode(lead, batch=7)
    assert record[:1] == b"\x02" and len(record) < len(lead.model_dump_json())
    assert batch_of(record) == 7 and batch_of(b"\x01{}") == 0
    assert len(lead.history) == 1 and b'"history"' not in record
    back = decode(record)
    assert back.history.items == [] and back.model_copy(update={"history": lead.history}) == lead
    assert decode(b"\x01" + record[9:]) == back   # a record from before the batch number
    legacy = orjson.loads(lead.model_dump_json())
    legacy["history"] = lead.history.items   # a record from when the history was part of it
    assert decode(orjson.dumps(legacy)) == lead


def test_the_deadline_schedule_yields_due_leads_in_time_order_and_skips_superseded_ones():
    s = DeadlineSchedule()
    s.set("a", T0 + timedelta(hours=3))
    s.set("b", T0 + timedelta(hours=1))
    s.set("a", T0 + timedelta(hours=2))     # rescheduled: the 3h entry is stale
    s.set("c", T0 + timedelta(hours=5))
    s.set("c", None)                        # nothing due any more
    assert [k for k, _ in s.pop_due(T0 + timedelta(hours=4))] == ["b", "a"]
    assert len(s) == 0 and list(s.pop_due(T0 + timedelta(days=9))) == []


class ListProducer:
    """A list as the producer: every send is recorded and acknowledged."""

    def __init__(self, log: list) -> None:
        self.log = log

    async def send(self, record: Record) -> Any:
        self.log.append(("send", record.topic, record.key))
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def flush(self) -> None:
        self.log.append(("flush",))


class DictChangelog:
    def __init__(self, table: dict, log: list) -> None:
        self.table, self.log = table, log

    def write(self, partition: int, key: str, value: bytes) -> None:
        self.table[key] = value
        self.log.append(("changelog", partition, key))

    def write_all(self, items: list[tuple[int, str, bytes]]) -> list[None]:
        return [self.write(*item) for item in items]

    def mark(self, partition: int, key: str, value: bytes) -> None:
        self.write(partition, key, value)
        self.log.append(("mark", partition, key))


def test_the_checkpoint_writes_journal_then_state_then_outputs_then_sent_mark_then_acks():
    log: list = []
    table: dict[str, bytes] = {}
    p = pipeline(table)
    cp = Checkpoint(max_events=100, max_seconds=60)
    for i, lead in enumerate(["u-1", "u-2"]):
        cp.taken(f"msg-{i}")
        p.apply(source(identify(lead=lead), lead, partition=i))

    async def ack(messages: list[str]) -> None:
        log.extend(("ack", message) for message in messages)

    records, state = p.drain()
    asyncio.run(cp.commit(records, state, ListProducer(log), DictChangelog(table, log), ack,
                          journal=p.journal))

    def first(pred) -> int:
        return next(i for i, e in enumerate(log) if pred(e))

    def last(pred) -> int:
        return max(i for i, e in enumerate(log) if pred(e))
    changelog = lambda e: e[0] == "changelog"   # noqa: E731
    journal = lambda e: changelog(e) and e[2].startswith("\x00journal/")   # noqa: E731
    lead = lambda e: changelog(e) and e[2] in ("u-1", "u-2")   # noqa: E731
    marker = lambda e: changelog(e) and e[2] == MARKER_KEY   # noqa: E731
    sent = lambda e: changelog(e) and e[2].startswith("\x00sent/")   # noqa: E731
    send = lambda e: e[0] == "send"   # noqa: E731
    ack_ = lambda e: e[0] == "ack"   # noqa: E731
    assert last(journal) < first(lead) and last(lead) < first(marker)
    # a mark is alone in its record batch: written after a flush of the records before it
    assert ("flush",) in log[last(lead):first(marker)]
    assert {e[2] for e in log if e[0] == "mark"} == {MARKER_KEY, "\x00sent/0", "\x00sent/1"}
    assert last(marker) < first(send) and last(send) < first(sent) < last(sent) < first(ack_)
    assert sorted(e[1] for e in log if marker(e)) == [0, 1]
    assert [e[1] for e in log if ack_(e)] == ["msg-0", "msg-1"] and len(cp) == 0
    assert {k for k in table if not k.startswith("\x00")} == {"u-1", "u-2"}
    assert batch_of(table["u-1"]) == 1 and table["\x00sent/0"] == b"1"


def test_a_batch_killed_after_its_state_sends_its_journaled_records_again_unchanged():
    """Killed after step 3 (state on record, outputs perhaps not sent): the next worker sends
    the journaled records again with the same ids and deciding the messages again changes
    nothing; killed before (state not on record): nothing is sent again."""
    table: dict[str, bytes] = {}
    p = pipeline(table)
    msgs = [source(identify(lead="u-1"), "u-1", offset=0),
            source(event(name="Demo Requested", lead="u-1", when=at(5)), "u-1", offset=1)]
    for m in msgs:
        p.apply(m)
    records, state = p.drain()

    class Killed(Exception):
        pass

    class DyingProducer(ListProducer):
        async def send(self, record: Record) -> Any:
            raise Killed()
    with pytest.raises(Killed):
        asyncio.run(Checkpoint(10, 60).write([], records, state, DyingProducer([]),
                                             DictChangelog(table, []), ack=None,  # type: ignore
                                             journal=p.journal))
    again = pipeline(dict(table))   # the next worker: the table as the broker had it
    for m in msgs:
        again.apply(m)
    resent, leads = again.drain()
    caused = [r for r in records if r.lead == "u-1"]
    assert caused and [(r.topic, r.value) for r in resent if r.topic != TOPICS.leads] == [
        (r.topic, r.value) for r in caused]
    assert set(leads) == {"u-1"} and leads["u-1"][1].version == state["u-1"][1].version
    # the same batch killed before its state: the journal is there, no lead carries its number
    fresh = {k: v for k, v in table.items() if k.startswith("\x00journal/")}
    assert pipeline(fresh).journal.resume(0) == {}


def test_the_checkpoint_writes_a_history_apart_and_only_when_it_changed():
    log: list = []
    table: dict[str, bytes] = {}
    histories: dict[str, bytes] = {}
    p = pipeline(table)
    cp = Checkpoint(max_events=100, max_seconds=60)

    async def ack(messages: list[str]) -> None:
        log.extend(("ack", message) for message in messages)

    async def commit() -> None:
        records, state = p.drain()
        await cp.commit(records, state, ListProducer(log), DictChangelog(table, log), ack,
                        DictChangelog(histories, log))

    p.apply(source(identify(lead="u-1"), "u-1"))
    asyncio.run(commit())
    assert b"messageId" not in table["u-1"] and b"messageId" in histories["u-1"]
    again = LeadStore(table, MODEL, histories=MemoryState(histories)).load("u-1", 0)
    assert again.history.items == p.store.load("u-1", 0).history.items != []
    # a change that adds no message (the periodic pass) leaves the history as it was
    stale = p.store.load("u-1", 0)
    p.keep(stale.model_copy(update={"version": stale.version + 1}), 0)
    written = len([e for e in log if e[0] == "changelog" and e[2] == "u-1"])
    asyncio.run(commit())
    assert len([e for e in log if e[0] == "changelog" and e[2] == "u-1"]) == written + 1


def test_a_checkpoint_expires_by_count_or_by_time_since_its_first_message():
    now = [0.0]
    cp = Checkpoint(max_events=3, max_seconds=1.0, clock=lambda: now[0])
    assert not cp.expired()
    cp.taken("a")
    cp.taken("b")
    assert not cp.expired()
    now[0] = 1.5
    assert cp.expired()
    cp2 = Checkpoint(max_events=2, max_seconds=60, clock=lambda: now[0])
    cp2.taken("a")
    cp2.taken("b")
    assert cp2.expired()


def test_the_batching_sink_writes_then_acknowledges_and_acks_skipped_items_too():
    written: list[list[str]] = []
    acked: list[str] = []
    now = [0.0]

    async def write(items: list[str]) -> None:
        assert not acked, "nothing is acknowledged before it is written"
        written.append(items)

    async def ack(message: str) -> None:
        acked.append(message)

    sink: BatchingSink[str] = BatchingSink(write, ack, max_items=3, max_seconds=0.5,
                                           clock=lambda: now[0])
    sink.add("row-1", "m1")
    sink.add(None, "m2")          # unreadable: not written, still acknowledged in order
    assert not sink.due()
    now[0] = 0.6
    assert sink.due()
    assert asyncio.run(sink.flush()) == ["m1", "m2"]
    assert written == [["row-1"]] and acked == ["m1", "m2"] and not sink.due()


def test_a_failed_sink_write_keeps_its_batch_unacknowledged_and_tries_again_later():
    written, acked, now = [], [], [0.0]
    fail = [2]

    async def write(items: list[str]) -> None:
        if fail[0]:
            fail[0] -= 1
            raise RuntimeError("a bug in a writer, or a value it cannot handle")
        written.append(list(items))

    async def ack(message: str) -> None:
        acked.append(message)

    slept: list[float] = []

    async def sleep(seconds: float) -> None:   # the failed flush holds its caller this long
        slept.append(seconds)

    sink: BatchingSink[str] = BatchingSink(write, ack, max_items=2, max_seconds=0.5,
                                           clock=lambda: now[0], sleep=sleep)
    sink.add("row-1", "m1")
    sink.add("row-2", "m2")
    assert sink.due()
    assert asyncio.run(sink.flush()) == [] and acked == [] and written == []
    assert slept == [1.0]
    sink.add("row-3", "m3")             # came meanwhile: after the kept batch
    assert not sink.due()               # not before the wait (1 s after the first failure)
    now[0] = 1.0
    assert sink.due() and asyncio.run(sink.flush()) == []
    assert slept == [1.0, 2.0]
    now[0] = 2.5
    assert not sink.due()               # the wait doubled (2 s after the second failure)
    now[0] = 3.0
    assert sink.due()
    assert asyncio.run(sink.flush()) == ["m1", "m2", "m3"]
    assert written == [["row-1", "row-2", "row-3"]] and acked == ["m1", "m2", "m3"]
    assert slept == [1.0, 2.0]           # a write that went through waits for nothing
    sink.add("row-4", "m4")
    sink.add("row-5", "m5")
    assert sink.due()                   # no wait once a write went through


def test_a_sink_batch_dropped_at_a_stop_is_forgotten_without_acknowledging_it():
    acked: list[str] = []

    async def write(items: list[str]) -> None:
        raise RuntimeError("down")

    async def ack(message: str) -> None:
        acked.append(message)

    sink: BatchingSink[str] = BatchingSink(write, ack, max_items=5, max_seconds=0.5)
    sink.add("row-1", "m1")
    assert asyncio.run(sink.flush(wait=False)) == []   # at a stop: no wait before the drop
    assert sink.drop() == ["m1"] and len(sink) == 0 and acked == []


@pytest.mark.parametrize("value", [b"", b"[]", b'{"kind": "link", "from": "", "into": "x"}'])
def test_identity_messages_are_typed_and_refuse_what_does_not_fit(value: bytes):
    from schemas.wire import InvalidMessage

    with pytest.raises(InvalidMessage) as err:
        parse_identity(value)
    assert err.value.code == "invalid_identity_message"


def test_a_dead_letter_too_large_to_send_again_is_cut_and_says_so():
    p = pipeline()
    huge = b'{"type": "track", "x": "' + b"a" * 1_000_000 + b'"}'
    p.apply(source(huge, "k" * 20_000))
    (dead,) = p.drain()[0]
    assert header(dead, "error") == "too_large"
    assert len(dead.value) == 512 * 1024 and dead.value == huge[:512 * 1024]
    assert len(dead.key) == 16 * 1024
    assert header(dead, "truncated") == f"key:20000,value:{len(huge)}"
    small = pipeline()
    small.apply(source(b"nope", "k"))
    (kept,) = small.drain()[0]
    assert kept.value == b"nope" and "truncated" not in dict(kept.headers)


@pytest.mark.parametrize("bad, limit", [
    ({"userId": "u\x00-1"}, "no_nul"),
    ({"traits": {"company": "Acme\x00"}}, "no_nul"),
    ({"properties": {"revenue": 1e12}}, "max_amount"),
    ({"properties": {"score": 1e300}}, "max_number"),
])
def test_what_postgresql_could_not_hold_is_refused_at_the_door(bad, limit):
    p = pipeline()
    message = {"messageId": "m-1", "type": "track", "event": "Order Completed",
               "userId": "u-1", "timestamp": T0.isoformat(), **bad}
    p.apply(source(message, message["userId"]))
    records, state = p.drain()
    (dead,) = records
    assert header(dead, "error") == "limit_exceeded" and limit in header(dead, "error_detail")
    assert state == {}


def test_a_partition_behind_its_end_with_nothing_taken_for_a_while_is_stalled():
    from streams.worker.progress import Progress

    now = [0.0]
    p = Progress(stall_seconds=60, clock=lambda: now[0])
    p.taken("events", 0, 9)
    assert p.stalled({("events", 0): 10, ("events", 1): 0}) == []   # caught up; empty
    assert p.stalled({("events", 0): 15, ("events", 1): 4}) == []   # behind, but just now
    now[0] = 30.0
    p.taken("events", 0, 12)                                       # partition 0 moves
    now[0] = 61.0
    (stalled,) = p.stalled({("events", 0): 15, ("events", 1): 4})
    assert stalled.startswith("events[1]: 4 behind")
    now[0] = 95.0
    assert len(p.stalled({("events", 0): 15, ("events", 1): 4})) == 2
    p.taken_all({("events", 1): 3, ("events", 0): 14})   # a batch's last offsets, at once
    assert p.stalled({("events", 0): 15, ("events", 1): 4}) == []
    now[0] = 200.0
    p.taken_all({("events", 0): 12})   # an offset from before: no progress
    assert p.stalled({("events", 0): 16, ("events", 1): 4}) == [
        "events[0]: 1 behind, nothing taken for 105s"]


def test_a_partition_left_behind_is_read_again_from_the_first_offset_not_taken():
    from streams.worker.progress import Progress

    now = [0.0]
    p = Progress(stall_seconds=60, clock=lambda: now[0])
    p.taken("events", 0, 9)
    ends = {("events", 0): 15, ("events", 1): 40, ("events", 2): 7}
    committed = {("events", 0): 8, ("events", 1): 30, ("events", 2): 7}
    assert p.stuck(ends, committed, after=10) == []        # behind, but only just now
    now[0] = 10.0
    # partition 0 from the last taken + 1; partition 1 (never taken here) from the group's
    # committed offset; partition 2 is at its end
    assert p.stuck(ends, committed, after=10) == [(("events", 0), 10), (("events", 1), 30)]
    now[0] = 15.0
    assert p.stuck(ends, committed, after=10) == []        # once every ``after`` seconds
    p.taken("events", 0, 10)                               # partition 0 moves again
    now[0] = 20.0
    assert p.stuck(ends, committed, after=10) == [(("events", 1), 30)]
    assert p.stalled(ends, committed) == []                # not yet for /healthz (60 s)
    now[0] = 61.0
    assert p.stalled(ends, committed) == ["events[1]: 10 behind, nothing taken for 61s"]


def test_write_behind_writes_one_batch_at_a_time_in_order_while_the_next_is_decided():
    events: list[str] = []
    cp = Checkpoint(max_events=10, max_seconds=60)
    gate = asyncio.Event()

    async def write(pending: list, records: list, leads: dict) -> None:
        events.append(f"start {pending}")
        if pending == ["a"]:
            await gate.wait()
        events.append(f"end {pending}")

    async def run() -> None:
        behind = WriteBehind(cp, lambda: ([], {}), lambda: False, write)
        cp.taken("a")
        await behind.commit(wait=False)     # batch 1 is being written ...
        await asyncio.sleep(0)
        cp.taken("b")                       # ... while batch 2 is decided
        second = asyncio.ensure_future(behind.commit())
        await asyncio.sleep(0.01)
        assert events == ["start ['a']"]    # batch 2 waits for batch 1
        gate.set()
        await second

    asyncio.run(run())
    assert events == ["start ['a']", "end ['a']", "start ['b']", "end ['b']"]


def test_a_partition_is_taken_in_offset_order_from_its_seek_on():
    from streams.worker.positions import SEEK, SKIP, TAKE, Positions

    now = [0.0]
    pos = Positions(clock=lambda: now[0], retry=2.0, tries=2)
    tp = ("events", 0)
    assert pos.admit(tp, 5) == SKIP                   # before the seek: it comes again after
    pos.sought({tp: 5})
    assert [pos.admit(tp, o) for o in (3, 5, 5, 6)] == [SKIP, TAKE, SKIP, TAKE]
    assert pos.admit(tp, 9) == SEEK                   # 7 and 8 went missing: read from 7
    assert pos.admit(tp, 10) == SKIP                  # fetched before the seek back
    assert [pos.admit(tp, o) for o in (7, 8, 9)] == [TAKE, TAKE, TAKE]
    pos.sought({tp: 4})                               # a seek back to the committed offset:
    assert pos.admit(tp, 4) == SKIP and pos.admit(tp, 10) == TAKE   # what was taken stays
    # offsets that are not there (compaction, transaction markers): taken as absent after the
    # seeks back have been tried
    assert pos.admit(tp, 13) == SEEK
    now[0] = 2.0
    assert pos.admit(tp, 13) == SEEK
    now[0] = 4.0
    assert pos.admit(tp, 13) == TAKE and pos.admit(tp, 14) == TAKE
    pos.clear()                                       # a rebalance starts
    assert pos.admit(tp, 15) == SKIP


def test_a_message_not_taken_is_settled_without_acknowledging_its_offset():
    """Faust waits for every message it handed out before a rebalance can end; a skipped one
    must not hold it (the rebalance hung for good), nor count as done (its offset acked)."""
    from types import SimpleNamespace

    from streams.worker.faust_glue import admitted
    from streams.worker.positions import Positions

    acked_offsets: list[int] = []
    seeks: list[tuple[object, int]] = []

    async def seek(tp: object, offset: int) -> None:
        seeks.append((tp, offset))

    consumer = SimpleNamespace(_gap={}, seek=seek, ack=lambda m: acked_offsets.append(m.offset))
    app = SimpleNamespace(consumer=consumer)
    pos = Positions()

    def message(offset: int) -> SimpleNamespace:
        return SimpleNamespace(topic="events", partition=0, offset=offset, tp=("events", 0),
                               acked=False)

    early = message(4)                                   # before the seek
    assert asyncio.run(admitted(app, pos, early)) is False and early.acked
    pos.sought({("events", 0): 4})
    taken = message(4)
    assert asyncio.run(admitted(app, pos, taken)) is True and not taken.acked
    ahead = message(7)                                   # 5 and 6 missing: sought back
    assert asyncio.run(admitted(app, pos, ahead)) is False and ahead.acked
    assert seeks == [(("events", 0), 5)]
    assert acked_offsets == []                           # no offset counted as done


def test_the_projection_sink_writes_the_newest_snapshot_per_lead_and_acks_every_message():
    from streams.worker.metrics import Metrics
    from streams.worker.sinks import ProjectionSink

    model = load_model()
    lead = new_lead("lead-a", model)
    versions = []
    for i in range(3):
        lead, _ = process(lead, event("page", lead="lead-a", properties={"path": "/pricing"}),
                          model)
        versions.append(lead.snapshot().model_dump_json().encode())
    other = new_lead("lead-b", model)
    other, _ = process(other, event("page", lead="lead-b"), model)
    written: list[list[LeadSnapshot]] = []
    acked: list[int] = []

    class Writer:
        async def write(self, snapshots: list[LeadSnapshot], refused: Any) -> int:
            written.append(list(snapshots))
            return len(snapshots)

    async def ack(offset: int) -> None:
        acked.append(offset)

    async def send(record: Record) -> None:
        raise AssertionError("nothing is dead-lettered here")

    sink = ProjectionSink("leads", Writer(), ack, SETTINGS, Metrics(), send, "dlq",  # type: ignore[arg-type]
                          lambda topic, p: 10)
    values = [versions[1], versions[2], b"not json", versions[0],
              other.snapshot().model_dump_json().encode(), b'{"lead_id": "x", "version": "z"}']
    for offset, value in enumerate(values):
        sink.add(Source("leads", 0, offset, None, value), offset)
    asyncio.run(sink.flush())
    assert acked == list(range(len(values)))      # every message, in order, after the write
    [batch] = written
    assert sorted((s.lead_id, s.version) for s in batch) == [("lead-a", 3), ("lead-b", 1)]


def test_the_workers_metrics_take_the_projection_families_from_the_projection_process():
    from streams.worker.web import merge_metrics

    own = ("# HELP funnel_events_total Interaction events taken\n"
           "# TYPE funnel_events_total counter\nfunnel_events_total{type=\"page\"} 7.0\n"
           "# HELP funnel_projection_rows_total Lead rows written\n"
           "# TYPE funnel_projection_rows_total counter\nfunnel_projection_rows_total 0.0\n")
    child = ("# HELP funnel_events_total Interaction events taken\n"
             "# TYPE funnel_events_total counter\n"
             "# HELP funnel_projection_rows_total Lead rows written\n"
             "# TYPE funnel_projection_rows_total counter\nfunnel_projection_rows_total 41.0\n"
             "# HELP funnel_projection_faust_messages_received_total Faust\n"
             "funnel_projection_faust_messages_received_total 43.0\n")
    merged = merge_metrics(own, child)
    assert 'funnel_events_total{type="page"} 7.0' in merged
    assert "funnel_projection_rows_total 41.0" in merged
    assert "funnel_projection_rows_total 0.0" not in merged
    assert "funnel_projection_faust_messages_received_total 43.0" in merged
    assert merged.count("# TYPE funnel_events_total counter") == 1   # each family once
    assert merged.count("# TYPE funnel_projection_rows_total counter") == 1


def test_a_seek_from_another_thread_leaves_the_fetched_records_to_the_consumer_thread():
    """aiokafka's seek deleted the partition's fetched records from a dict the consumer thread
    walks; its own delete of the same entry then raised KeyError and ended the worker."""
    from types import SimpleNamespace

    from aiokafka.consumer.fetcher import Fetcher

    from streams.worker.faust_glue import seek_in_place

    seek_in_place()
    sought, notified = [], []
    fetcher = SimpleNamespace(
        _records={"events-2": "records fetched before the seek"},
        _subscriptions=SimpleNamespace(seek=lambda tp, offset: sought.append((tp, offset))),
        _wait_consume_future="waiter", _notify=notified.append)
    Fetcher.seek_to(fetcher, "events-2", 0)
    assert sought == [("events-2", 0)] and notified == ["waiter"]
    assert fetcher._records == {"events-2": "records fetched before the seek"}


def test_what_the_worker_and_the_clients_write_is_compressed_with_the_configured_codec(tmp_path):
    from pydantic import ValidationError

    from streams.worker.app import create_app

    assert Settings().compression_type() == "zstd"   # the default
    assert Settings(compression="none").compression_type() is None
    s = Settings(broker="kafka://127.0.0.1:1", compression="lz4", data_dir=tmp_path,
                 worker_port=0)
    assert create_app(s, MODEL).conf.producer_compression_type == "lz4"
    with pytest.raises(ValidationError, match="compression"):
        Settings(compression="brotli")


class FakeBatch:
    """An aiokafka ``BatchBuilder`` that holds two records."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes | None,
               headers: Any) -> object | None:
        if len(self.records) >= 2:
            return None
        self.records.append((key, value))
        return object()


class FakeAioProducer:
    def __init__(self, fail: set[int] = frozenset()) -> None:   # type: ignore[assignment]
        self.sent: list[tuple[str, int, list, asyncio.Future]] = []
        self.fail = fail

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(8))

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future:
        if partition in self.fail:
            raise RuntimeError("no leader for the partition")
        future = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch.records, future))
        return future


def test_the_compiled_murmur2_is_every_kafka_clients():
    """The sender's own murmur2 (compiled with the pipeline) against kafka-python's and
    aiokafka's, on keys of every length remainder, every byte value, and lead ids."""
    import random

    from aiokafka.partitioner import murmur2 as aiokafka_murmur2
    from kafka.partitioner.default import murmur2 as kafka_murmur2

    from streams.worker.batches import murmur2

    rnd = random.Random(12)
    keys = [b"", b"\x00", b"\xff" * 7, bytes(range(256)), "ü-😀".encode(),
            *(f"lead-{i}".encode() for i in range(100)),
            *(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 80))) for _ in range(2000))]
    for key in keys:
        assert murmur2(key) == kafka_murmur2(key) == aiokafka_murmur2(key), key


def test_records_go_out_a_batch_per_partition_in_order_each_acknowledged_with_its_batch():
    from kafka.partitioner.default import murmur2

    from streams.worker.batches import BatchSender

    async def run() -> None:
        fake = FakeAioProducer(fail={5})
        sender = BatchSender(lambda: fake)
        futures = [sender.append("t", 0, b"k%d" % i, b"v%d" % i) for i in range(5)]
        other = sender.append("t", 1, b"x", b"y")
        lost = sender.append("t", 5, b"z", b"z")
        assert fake.sent == [] and len(sender) == 5    # nothing sent before the flush
        await sender.flush()
        assert [(p, records) for _, p, records, _ in fake.sent] == [
            (0, [(b"k0", b"v0"), (b"k1", b"v1")]), (0, [(b"k2", b"v2"), (b"k3", b"v3")]),
            (0, [(b"k4", b"v4")]), (1, [(b"x", b"y")])]   # a partition's order kept
        assert futures[0] is futures[1] and futures[1] is not futures[2]
        assert not futures[0].done()                      # until the broker acknowledged it
        for n, (*_, sent) in enumerate(fake.sent):
            sent.set_result(("metadata of batch", n))
        await asyncio.sleep(0)
        assert [f.result() for f in futures] == [("metadata of batch", n) for n in (0, 0, 1, 1, 2)]
        assert other.result() == ("metadata of batch", 3)
        with pytest.raises(RuntimeError, match="no leader"):
            lost.result()                                 # the failure reaches the record's owner
        # a key goes to the partition every Kafka client's default partitioner gives it
        for _ in range(2):   # the second time from what the sender remembered of each key
            for i in range(200):
                key = f"lead-{i}".encode()
                assert await sender.partition_of("t", key) == (murmur2(key) & 0x7FFFFFFF) % 8
        assert len(sender.by_key) == 200
        assert {await sender.partition_of("t", None) for _ in range(200)} <= set(range(8))
        assert len(sender.by_key) == 200   # no key: a random partition, nothing remembered

    asyncio.run(run())


def test_a_tail_topic_ends_each_partition_on_a_record_alone_in_its_batch():
    from streams.worker.batches import BatchSender

    async def run() -> None:
        fake = FakeAioProducer()
        sender = BatchSender(lambda: fake)
        sender.tails.add("log")
        futures = [sender.append("log", 0, b"k%d" % i, b"v%d" % i) for i in range(4)]
        single = sender.append("log", 1, b"x", b"y")
        plain = [sender.append("t", 0, b"a%d" % i, b"b") for i in range(2)]
        await sender.flush()
        by_partition = [(t, p, [k for k, _ in records]) for t, p, records, _ in fake.sent]
        assert by_partition == [
            ("log", 0, [b"k0", b"k1"]), ("log", 0, [b"k2"]),   # batches of two, in order
            ("t", 0, [b"a0", b"a1"]),                          # other topics: as before
            ("log", 0, [b"k3"]), ("log", 1, [b"x"])]           # the last ones alone, after
        assert plain[0] is plain[1] and len(sender) == 0
        for n, (*_, sent) in enumerate(fake.sent):
            sent.set_result(n)
        for _ in range(3):
            await asyncio.sleep(0)
        assert [f.result() for f in futures] == [0, 0, 1, 3] and single.result() == 4
        # a record held back joins the next batch when another one comes after it
        held = sender.append("log", 2, b"h", b"v")
        after = sender.append("log", 2, b"i", b"v")
        await sender.flush()
        assert [[k for k, _ in r] for _, p, r, _ in fake.sent[5:]] == [[b"h"], [b"i"]]
        fake.sent[5][3].set_exception(RuntimeError("not enough replicas"))
        fake.sent[6][3].set_result(6)
        for _ in range(3):
            await asyncio.sleep(0)
        assert isinstance(held.exception(), RuntimeError) and after.result() == 6

    asyncio.run(run())


def test_a_stored_offset_inside_the_last_batch_is_set_back_to_its_base_and_nothing_else():
    from streams.worker.fence import fenced

    # the partition's last batch holds offsets 7..9: Tansu reports its end as 8
    assert fenced(9, reported_end=8, true_end=10) == 7
    assert fenced(8, reported_end=8, true_end=10) == 7
    assert fenced(7, reported_end=8, true_end=10) is None    # Faust's check passes: left
    assert fenced(3, reported_end=8, true_end=10) is None    # behind: recovery reads the rest
    assert fenced(None, reported_end=8, true_end=10) is None
    # past the true end: the topic was deleted or the broker reset; Faust's check says so
    assert fenced(10, reported_end=8, true_end=10) is None
    assert fenced(40, reported_end=0, true_end=0) is None


def test_the_worker_consumer_waits_for_records_as_long_as_the_fetch_wait_setting_says():
    """Faust builds its aiokafka consumer with a 1.5 s fetch wait and no setting for it; the
    embedded broker answers a waiting fetch only when the wait is over, so that wait was each
    hop's delay on the worker's own topics. ``fetch_wait`` sets it (``FUNNEL_FETCH_WAIT``), on a
    real Faust app's consumer, and setting it again does not wrap Faust's method twice."""
    import faust
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from streams.worker.faust_glue import FETCH_WAIT, fetch_wait

    before = FETCH_WAIT[0]
    try:
        fetch_wait(0.25)
        wrapped = AIOKafkaConsumerThread._create_worker_consumer
        fetch_wait(0.1)
        assert AIOKafkaConsumerThread._create_worker_consumer is wrapped
        app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1", autodiscover=False)

        async def made() -> int:
            consumer = app.consumer._thread._create_worker_consumer(app.transport)
            await consumer.stop()
            return consumer._fetch_max_wait_ms

        assert asyncio.run(made()) == 100
        assert Settings.model_fields["fetch_wait"].default == 0.25
    finally:
        FETCH_WAIT[0] = before


def test_the_counters_take_what_was_counted_at_the_next_publish():
    from streams.worker.metrics import Metrics

    m = Metrics()
    for kind in ("track", "page", "track"):
        m.inc(m.events, kind)
    m.inc(m.dead_letters, "invalid_json")

    def value(counter: Any, label: str) -> float:
        return counter.labels(label)._value.get()

    assert value(m.events, "track") == 0   # counted, not yet published
    m.publish()
    assert (value(m.events, "track"), value(m.events, "page")) == (2, 1)
    assert value(m.dead_letters, "invalid_json") == 1
    m.inc(m.events, "track")
    m.publish()
    m.publish()   # nothing new: nothing added
    assert value(m.events, "track") == 3
