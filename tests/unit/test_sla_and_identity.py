"""SLA timers in event time, and identity merges: pure core, no broker."""

from __future__ import annotations

import random
from datetime import timedelta

import orjson
import pytest

from funnel.config import default_model_text, load_model, parse_model
from funnel.decide import CommandRefused, new_lead, process
from funnel.history import revive
from funnel.merge import LinkRefused, accept_link, merge
from funnel.timers import expires_at, next_due, sla_due_at, tick
from funnel.lifecycle import STAGES
from tests.unit.helpers import GOOD_TRAITS, at, command, event, identify, page

MODEL = load_model()


def run(lead, *messages, model=MODEL):
    moves = []
    for m in messages:
        lead, t = process(lead, m, model)
        moves += t
    return lead, moves


def sql_lead(model=MODEL):
    lead, _ = run(new_lead("u-1", model), identify(), event(name="Content Downloaded", when=at(1)),
                  event(name="Demo Requested", when=at(2)), event(name="Trial Started", when=at(3)),
                  model=model)
    assert lead.stage == "sql"
    return lead


# --- SLA -----------------------------------------------------------------------------------

def test_an_sql_nobody_acts_on_is_breached_once_at_its_deadline():
    lead = sql_lead()
    due = sla_due_at(lead, MODEL)
    assert due == at(3) + timedelta(hours=24)
    assert next_due(lead, MODEL, cooling=False) == due
    same, _ = tick(lead, due - timedelta(seconds=1), MODEL, cooling=False)
    assert same is lead
    breached, moves = tick(lead, due + timedelta(hours=5), MODEL, cooling=False)
    assert breached.sla_breached_at == due and moves == [] and breached.version == lead.version + 1
    again, _ = tick(breached, due + timedelta(days=3), MODEL, cooling=False)
    assert again is breached and sla_due_at(breached, MODEL) is None


def test_sales_acting_in_time_stops_the_sla_clock():
    lead, _ = run(sql_lead(), command("accept", when=at(60)))   # an hour later: acknowledged
    assert lead.stage == "sql" and sla_due_at(lead, MODEL) is None
    later, _ = tick(lead, at(days=10), MODEL, cooling=False)
    assert later.sla_breached_at is None


def test_a_late_command_records_the_breach_in_event_time_first():
    lead, _ = run(sql_lead(), command("won", amount=10, when=at(days=3)))
    assert lead.sla_breached_at == at(3) + timedelta(hours=24) and lead.stage == "customer"


def test_an_sql_entered_by_a_sales_command_has_no_sla_to_breach():
    lead, _ = run(new_lead("s-1", MODEL), command("create", lead="s-1"))
    assert lead.stage == "sql" and sla_due_at(lead, MODEL) is None


def test_an_mql_nobody_works_is_recycled_by_policy_at_its_deadline():
    lead, _ = run(new_lead("u-1", MODEL), identify(), event(name="Content Downloaded", when=at(1)))
    assert lead.stage == "mql"
    due = expires_at(lead, MODEL)
    assert due == at(1) + timedelta(days=30)
    lead2, moves = tick(lead, due + timedelta(days=1), MODEL, cooling=False)
    assert lead2.stage == "recycled" and lead2.recycled_at == due
    assert [(m.trigger, m.actor, m.occurred_at) for m in moves] == [("expire", "policy", due)]


def test_the_mql_expiry_also_happens_in_event_time_when_the_next_event_comes():
    lead, moves = run(new_lead("u-1", MODEL), identify(),
                      event(name="Content Downloaded", when=at(1)),
                      page("/blog", when=at(days=40)))
    assert [m.trigger for m in moves] == ["qualify_marketing", "expire"]
    assert lead.stage == "recycled"


def test_timers_can_be_turned_off_in_the_model():
    model = parse_model(default_model_text().replace("sql_hours: 24", "sql_hours: null")
                        .replace("mql_days: 30", "mql_days: null"))
    lead = sql_lead(model)
    assert sla_due_at(lead, model) is None
    assert tick(lead, at(days=400), model, cooling=False)[0] is lead


# --- identity ------------------------------------------------------------------------------

def anon(name=None, *, when, type_="track", **kw):
    return event(type_, name, lead="a-1", when=when, userId=None, anonymousId="a-1", **kw)


ANON_HISTORY = [page("/pricing", when=at(days=0)), page("/pricing", when=at(days=0, minutes=5)),
                page("/pricing", when=at(days=0, minutes=9)),     # over the per-day limit
                page("/features", when=at(days=1))]


def as_anonymous(msg):
    data = msg.model_dump(mode="json")
    data.update(userId=None, anonymousId="a-1")
    return type(msg).model_validate(data)


def linked_vs_one_id(anonymous_part, known_part):
    """The same messages: under two ids then linked, and under one id from the start."""
    a = new_lead("a-1", MODEL)
    a, _ = run(a, *(as_anonymous(m) for m in anonymous_part))
    u = new_lead("u-1", MODEL)
    u, _ = run(u, *known_part)
    assert "a-1" in u.aliases
    marked, history = accept_link(a, "u-1", u.traits.get("email"), "identify")
    when = next(m.timestamp for m in known_part if m.type == "identify")
    merged, moves = merge(u, history, "a-1", when, MODEL)
    one, one_moves = run(new_lead("u-1", MODEL), *sorted(
        [*anonymous_part, *known_part], key=lambda m: m.timestamp))
    return marked, merged, one, moves, one_moves


FIELDS = ("interest_raw", "interest_at", "temperature", "fit_score", "quality", "stage",
          "events_count", "traits", "first_seen_at", "last_activity_at", "first_touch",
          "orders", "revenue", "mql_at", "sql_at", "signals", "rule_days")


def same(merged, one):
    return {f: getattr(merged, f) for f in FIELDS} == {f: getattr(one, f) for f in FIELDS}


def test_anonymous_browsing_then_identify_equals_one_id_from_the_start():
    known = [identify(anonymousId="a-1", when=at(days=2)), page("/pricing", when=at(days=2, minutes=1))]
    marked, merged, one, moves, one_moves = linked_vs_one_id(
        ANON_HISTORY + [event(name="Content Downloaded", when=at(days=1, minutes=30))], known)
    assert marked.merged_into == "u-1" and marked.history.items == []
    assert merged.merged_from == ["a-1"]
    assert same(merged, one), {f: (getattr(merged, f), getattr(one, f)) for f in FIELDS
                               if getattr(merged, f) != getattr(one, f)}
    assert merged.stage == "mql" and [m.to_stage for m in moves] == ["mql"]
    assert merged.events_count == 7


def test_differential_merge_on_random_histories():
    rnd = random.Random(7)
    names = ["Content Downloaded", "Email Opened", "Email Clicked", "Ad Clicked", "Demo Requested",
             "Webinar Attended", "Unsubscribed"]
    for trial in range(40):
        msgs = []
        for i in range(rnd.randint(1, 25)):
            when = at(days=rnd.uniform(0, 20))
            msgs.append(page(rnd.choice(["/pricing", "/blog", "/plans/x"]), when=when)
                        if rnd.random() < 0.5 else event(name=rnd.choice(names), when=when))
        if rnd.random() < 0.3:
            msgs.append(msgs[rnd.randrange(len(msgs))])    # a re-sent message
        # each id's messages arrive in event time; which id carried which is random
        rnd.shuffle(msgs)
        split = rnd.randint(0, len(msgs))
        known = sorted([identify(GOOD_TRAITS if rnd.random() < 0.7 else {"email": "x@gmail.com"},
                                 anonymousId="a-1", when=at(days=rnd.uniform(0, 20)))]
                       + msgs[split:], key=lambda m: m.timestamp)
        anonymous = sorted(msgs[:split], key=lambda m: m.timestamp)
        _, merged, one, _, _ = linked_vs_one_id(anonymous, known)
        for f in FIELDS[:5] + ("events_count", "rule_days"):
            assert getattr(merged, f) == pytest.approx(getattr(one, f)) \
                if isinstance(getattr(one, f), float) else getattr(merged, f) == getattr(one, f), \
                (trial, f)


def test_two_known_people_on_one_browser_are_not_merged():
    a, _ = run(new_lead("a-1", MODEL), as_anonymous(page("/", when=at(0))))
    marked, _ = accept_link(a, "alice", "alice@acme.io", "identify")
    with pytest.raises(LinkRefused, match="already merged into alice"):
        accept_link(marked, "bob", "bob@acme.io", "identify")
    assert accept_link(marked, "alice", "alice@acme.io", "identify") == (None, [])


def test_an_anonymous_lead_with_someone_elses_email_is_not_merged_by_identify():
    a, _ = run(new_lead("a-1", MODEL), as_anonymous(identify({"email": "carol@x.io"})))
    with pytest.raises(LinkRefused, match="different known person"):
        accept_link(a, "dave", "dave@x.io", "identify")
    marked, _ = accept_link(a, "dave", "dave@x.io", "alias")   # an alias says they are one
    assert marked.merged_into == "dave"


def test_alias_links_the_previous_id():
    u, _ = run(new_lead("u-9", MODEL), event("alias", lead="u-9", previousId="old-id"))
    assert u.aliases == ["old-id"]


def test_a_message_that_reaches_the_merged_lead_later_is_replayed_in_event_time():
    known = [identify(anonymousId="a-1", when=at(days=2))]
    _, merged, _, _, _ = linked_vs_one_id(ANON_HISTORY, known)
    late = as_anonymous(page("/pricing", when=at(days=0, minutes=20)))   # day 0: limit reached
    merged2, _ = merge(merged, [{"k": "e", "m": late.model_dump(mode="json")}], None, at(days=2),
                       MODEL)
    one, _ = run(new_lead("u-1", MODEL), *sorted([*ANON_HISTORY, late, *known],
                                                 key=lambda m: m.timestamp))
    assert same(merged2, one) and merged2.events_count == merged.events_count + 1
    assert merged2.version == merged.version + 1
    again, _ = merge(merged2, [{"k": "e", "m": late.model_dump(mode="json")}], None, at(days=2), MODEL)
    assert again.events_count == merged2.events_count   # a duplicate counts once


def test_merge_keeps_the_lifecycle_history_of_the_known_lead():
    u = sql_lead()
    a, _ = run(new_lead("a-1", MODEL), as_anonymous(page("/blog", when=at(0))))
    _, history = accept_link(a, "u-1", "cto@acme.io", "identify")
    merged, moves = merge(u, history, "a-1", at(10), MODEL)
    assert merged.stage == "sql" and merged.transitions == u.transitions and moves == []
    assert merged.sql_at == u.sql_at and merged.events_count == u.events_count + 1


def test_stage_list_is_the_contracts():
    assert STAGES == ["iql", "mql", "sal", "sql", "customer", "recycled", "disqualified"]


def test_a_lead_with_heavy_messages_keeps_a_bounded_history_and_says_it_was_cut():
    from funnel.history import HISTORY_BYTES, History

    lead = new_lead("u-heavy", MODEL)
    for i in range(120):
        lead, _ = process(lead, event("page", lead="u-heavy", when=at(i),
                                      properties={"path": "/blog", "note": "x" * 7000}), MODEL)
    assert lead.events_count == 120
    items = lead.history.items
    sizes = sum(len(orjson.dumps(item)) for item in items) + len(items) - 1   # + the newlines
    assert len(lead.history.blob) == sizes <= HISTORY_BYTES < 120 * 7000
    assert lead.history.cut and items[-1]["m"]["properties"]["note"] == "x" * 7000
    assert len(lead.history) == len(items) == len(History.decode(lead.history.encode()))
    assert len(lead.history.encode()) < 512 * 1024
    assert b"x" * 7000 not in lead.model_dump_json().encode()   # not in the lead's record


def test_traits_over_their_budget_drop_the_keys_set_longest_ago():
    from funnel.model import TRAITS_BYTES

    lead = new_lead("u-traits", MODEL)
    for i in range(40):
        lead, _ = process(lead, identify({f"t{i}": "v" * 3000, "email": "a@b.io"},
                                         lead="u-traits", when=at(i)), MODEL)
    assert len(orjson.dumps(lead.traits)) <= TRAITS_BYTES
    assert "t39" in lead.traits and "t0" not in lead.traits and lead.traits["email"] == "a@b.io"


def test_a_lead_that_goes_round_and_round_carries_only_its_last_stage_changes():
    from funnel.model import TRANSITIONS_KEPT

    lead = sql_lead()
    for i in range(40):
        lead, _ = run(lead, command("reject", when=at(10 + 2 * i)),
                      command("reopen", when=at(11 + 2 * i)))
    assert lead.stage == "sql" and len(lead.transitions) == TRANSITIONS_KEPT
    assert lead.transitions[-1].version == lead.version   # the newest are the ones kept
    assert [t.to_stage for t in lead.transitions[-2:]] == ["recycled", "sql"]


def test_every_purchase_is_remembered_with_its_time_currency_and_id():
    lead, _ = run(sql_lead(), command("won", when=at(60), amount=900.0, currency="eur",
                                      cid="c-won"),
                  event(name="Order Completed", when=at(90), mid="m-order",
                        properties={"revenue": 50, "currency": "USD"}))
    assert [(o.order_id, o.occurred_at, o.amount, o.currency, o.source)
            for o in lead.recent_orders] == [("c-won", at(60), 900.0, "EUR", "sales"),
                                             ("m-order", at(90), 50.0, "USD", "event")]
    assert lead.snapshot().recent_orders == lead.recent_orders and lead.orders == 2


def test_a_remembered_event_is_what_its_json_dump_would_be():
    from funnel.history import EVENT_FIELDS, compact, revive
    from schemas.events import InteractionEvent

    events = [
        InteractionEvent(messageId="m1", type="page", timestamp="2026-01-01T10:00:00.5+02:00",
                         anonymousId="a", properties={"path": "/x", "n": None, "deep": {"v": 1}},
                         context={"page": {"url": "u"}, "ip": "1.2.3.4"}, extra_field=3),
        InteractionEvent(messageId="m2", type="track", event="Demo Requested", userId="u",
                         timestamp="2026-01-01T00:00:00Z", traits={"email": "e@x.io"}),
        InteractionEvent(messageId="m3", type="alias", userId="u", previousId="a",
                         timestamp="2026-01-01T00:00:00.000001Z")]
    for e in events:
        item = compact(e)
        dumped = e.model_dump(mode="json", exclude_none=True, include=EVENT_FIELDS)
        assert orjson.dumps({**item["m"], "context": None}) \
            == orjson.dumps({**dumped, "context": None})
        assert revive(item) == InteractionEvent.model_validate(
            {**dumped, **({"context": item["m"]["context"]} if "context" in item["m"] else {})})
        # read back from the lead's own history: built without validating, the same event
        known = revive(orjson.loads(orjson.dumps(item)), known=True)
        checked = revive(item)
        assert known == checked and known.__dict__ == checked.__dict__
        assert known.timestamp.tzinfo is checked.timestamp.tzinfo
        assert known.model_fields_set == checked.model_fields_set
        assert known.model_extra == checked.model_extra and known.model_dump_json() == \
            checked.model_dump_json()
    assert compact(events[0])["m"]["timestamp"] == "2026-01-01T08:00:00.500000Z"
    assert compact(events[0])["m"]["context"] == {"page": {"url": "u"}}   # only what replay needs


def test_rescore_gives_what_process_gives_message_after_message():
    """The merge's replay (``rescore``: one copy, the history written once, no stage moves when
    only events are replayed) against ``process`` item after item, on simulated leads' histories
    with re-sent messages, some from a lead part-way (as a cut history's merge does)."""
    from funnel.decide import rescore
    from funnel.history import compact
    from funnel.merge import SCORING_FIELDS
    from schemas.events import InteractionEvent
    from tests.unit.helpers import simulated_history

    msgs, _ = simulated_history(120, seed=5, days=30)
    per_lead: dict[str, list] = {}
    for m in msgs:
        per_lead.setdefault(m.lead_key if isinstance(m, InteractionEvent) else m.lead_id,
                            []).append(compact(m))
    rnd, checked, with_commands = random.Random(3), 0, 0
    for lead_id, items in per_lead.items():
        items = items + [items[rnd.randrange(len(items))] for _ in range(rnd.randint(0, 2))]
        start = new_lead(lead_id, MODEL)
        if len(items) > 4 and rnd.random() < 0.3:   # from a lead with messages of its own
            start = rescore(start, items[:2], MODEL)
            items = items[2:]
        slow = start
        for item in items:
            try:
                slow, _ = process(slow, revive(item), MODEL)
            except CommandRefused:
                pass
        fast = rescore(start, items, MODEL)
        for name in (*SCORING_FIELDS, "seen_ids", "origin"):
            assert getattr(fast, name) == getattr(slow, name), (lead_id, name)
        assert fast.history.blob == slow.history.blob and len(fast.history) == len(slow.history)
        checked += 1
        with_commands += any(i["k"] == "c" for i in items)
    assert checked == len(per_lead) > 100 and 0 < with_commands < checked


def test_a_history_extended_at_once_is_the_history_added_to_item_by_item():
    from funnel.history import HISTORY_KEPT, History

    rnd = random.Random(11)
    for trial in range(40):
        sizes = (10, 300) if trial % 2 else (10, 300, 9000, 70000)   # the count's bound, or the size's
        items = [{"k": "e", "m": {"messageId": f"m{trial}-{i}", "note": "x" * rnd.choice(sizes)}}
                 for i in range(rnd.randint(0, HISTORY_KEPT + 40))]
        start = History.of(items[:rnd.randint(0, 5)], cut=rnd.random() < 0.2)
        one_by_one = start
        for item in items:
            one_by_one = one_by_one.add(item)
        at_once = start.extend(items)
        assert (at_once.blob, at_once.cut, len(at_once)) == \
            (one_by_one.blob, one_by_one.cut, len(one_by_one))


def test_an_item_from_the_wire_is_kept_as_compact_writes_it_and_replays_alike_later():
    """The other id's items come over ``funnel.identity``: validated and kept in the lead's
    history as ``compact`` writes them, so that a later merge, which rebuilds the lead's own items
    without validating them, replays what was validated."""
    from funnel.decide import rescore
    from funnel.history import compact, item_time
    from funnel.merge import SCORING_FIELDS, known_items

    u, _ = run(new_lead("u-1", MODEL), identify(anonymousId="a-1", when=at(days=2)))
    wire = {"k": "e", "m": {"messageId": "w1", "type": "page", "anonymousId": 42,
                            "timestamp": "2026-11-21T12:00:00+02:00", "properties": None,
                            "context": {"page": {"path": "/pricing"}, "ip": "1.2.3.4"},
                            "sentAt": "2026-11-21T12:00:01Z"}}
    merged, _ = merge(u, [wire], "a-1", at(days=2), MODEL)
    kept = next(i for i in merged.history.items if i["m"]["messageId"] == "w1")
    assert kept == compact(revive(wire)) and kept["m"]["anonymousId"] == "42"
    assert kept["m"]["properties"] == {} and kept["m"]["timestamp"] == "2026-11-21T10:00:00Z"
    later = compact(page("/pricing", lead="a-2", when=at(days=3)))
    again, _ = merge(merged, [later], "a-2", at(days=3), MODEL)
    replay = rescore(new_lead("u-1", MODEL), sorted(known_items(again), key=item_time), MODEL)
    assert again.events_count == 3
    for name in SCORING_FIELDS:
        assert getattr(again, name) == getattr(replay, name), name
