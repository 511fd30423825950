"""Every transition of the lifecycle, allowed and refused, and determinism of process()."""

from __future__ import annotations

import random

import pytest

from funnel.config import default_model_text, load_model, parse_model
from funnel.decide import CommandRefused, new_lead, process
from funnel.lifecycle import STAGES, TRANSITIONS, lifecycle_for
from tests.unit.helpers import at, command, event, identify, page

MODEL = load_model()


def run(*messages, model=MODEL, lead=None):
    lead = lead or new_lead("u-1", model)
    moves = []
    for m in messages:
        lead, t = process(lead, m, model)
        moves.extend((x.from_stage, x.to_stage, x.trigger) for x in t)
    return lead, moves


def qualified_sql(model=MODEL):
    return run(identify(), event(name="Content Downloaded", when=at(1)),
               event(name="Demo Requested", when=at(2)),
               event(name="Trial Started", when=at(3)), model=model)


def with_policy(policy: str):
    return parse_model(default_model_text().replace("policy: auto", f"policy: {policy}"))


def test_a_download_from_a_known_person_makes_an_mql():
    lead, moves = run(identify(), event(name="Content Downloaded", when=at(1)))
    assert lead.stage == "mql" and moves == [("iql", "mql", "qualify_marketing")]
    assert lead.mql_at == at(1) and lead.stage_entered_at == at(1)


def test_an_anonymous_download_does_not_make_an_mql_by_itself():
    lead, moves = run(event(name="Content Downloaded"))
    assert lead.stage == "iql" and moves == []


def test_interest_and_fit_above_the_bars_make_an_mql_without_a_signal():
    views = [page("/pricing", when=at(days=d)) for d in range(3)]
    lead, moves = run(identify(), *views)
    assert lead.interest_raw >= 25 and lead.stage == "mql"


def test_demo_request_from_high_fit_mql_hands_off_to_sales():
    lead, moves = qualified_sql()
    assert lead.stage == "sql"
    assert ("mql", "sql", "qualify_sales") in moves
    assert lead.sql_at is not None and lead.temperature == "hot" and lead.quality == "high"


def test_a_low_fit_lead_stays_mql_however_hot():
    lead, _ = run(identify({"email": "kid@gmail.com", "job_title": "student"}),
                  event(name="Content Downloaded", when=at(1)),
                  *(event(name="Demo Requested", when=at(2 + i)) for i in range(4)))
    assert lead.temperature == "hot" and lead.quality == "low" and lead.stage == "mql"


def test_one_event_can_move_a_lead_through_several_stages_in_order():
    hot_but_unknown = [event(name="Demo Requested", when=at(i)) for i in range(3)]
    lead, moves = run(*hot_but_unknown)
    assert (lead.stage, lead.temperature, lead.quality) == ("iql", "hot", "low")
    lead, moves = run(identify(when=at(5)), lead=lead)
    assert [m[1] for m in moves] == ["mql", "sql"]
    versions = [t.version for t in lead.transitions]
    assert versions == sorted(set(versions))


def test_an_order_makes_a_customer_from_any_stage_and_adds_revenue():
    lead, moves = run(event(name="Order Completed", properties={"revenue": 99.5}))
    assert lead.stage == "customer" and lead.orders == 1 and lead.revenue == 99.5
    lead, _ = run(event(name="Order Completed", properties={"revenue": 1}, when=at(9)), lead=lead)
    assert lead.orders == 2 and lead.revenue == 100.5 and lead.stage == "customer"


def test_sales_won_makes_a_customer_with_the_amount():
    lead, _ = qualified_sql()
    lead, moves = run(command("won", amount=1200.0, actor="rep@x.io", when=at(10)), lead=lead)
    assert lead.stage == "customer" and lead.revenue == 1200.0 and lead.customer_at == at(10)
    assert lead.transitions[-1].actor == "rep@x.io"


def test_sales_create_makes_a_sales_origin_lead_at_sql():
    lead, moves = run(command("create", lead="new", traits={"email": "a@b.io"}))
    assert (lead.stage, lead.origin) == ("sql", "sales") and moves == [("iql", "sql", "create")]


def test_rejected_lead_is_recycled_and_must_earn_its_mql_again():
    lead, _ = qualified_sql()
    lead, _ = run(command("reject", when=at(10)), lead=lead)
    assert lead.stage == "recycled"
    lead, _ = run(page("/blog", when=at(11)), lead=lead)
    assert lead.stage == "recycled"   # old points do not count
    lead, moves = run(event(name="Webinar Attended", when=at(12)),
                      event(name="Demo Requested", when=at(13)), lead=lead)
    assert [m[1] for m in moves] == ["mql", "sql"]


def test_lost_deal_goes_to_recycled_and_reopen_brings_it_back_to_sql():
    lead, _ = qualified_sql()
    lead, _ = run(command("lost", when=at(10)), lead=lead)
    assert lead.stage == "recycled"
    lead, _ = run(command("reopen", when=at(11)), lead=lead)
    assert lead.stage == "sql"


@pytest.mark.parametrize("stage", ["iql", "mql", "sal", "sql", "recycled"])
def test_disqualify_is_allowed_before_customer(stage):
    lead = new_lead("u-1", MODEL).model_copy(update={"stage": stage})
    lead, _ = run(command("disqualify"), lead=lead)
    assert lead.stage == "disqualified"


REFUSED = [("accept", "iql"), ("accept", "sal"), ("reject", "iql"), ("won", "iql"),
           ("lost", "mql"), ("reopen", "sql"), ("create", "mql"), ("disqualify", "customer"),
           ("won", "recycled"), ("accept", "customer")]


@pytest.mark.parametrize("action,stage", REFUSED)
def test_a_command_the_stage_does_not_allow_is_refused_and_changes_nothing(action, stage):
    lead = new_lead("u-1", MODEL).model_copy(update={"stage": stage})
    with pytest.raises(CommandRefused, match=f"'{stage}'"):
        process(lead, command(action, amount=5.0), MODEL)
    assert lead.stage == stage and lead.version == 0 and lead.revenue == 0


def test_sales_accept_policy_waits_for_sales_before_sql():
    model = with_policy("sales_accept")
    lead, _ = qualified_sql(model)
    assert lead.stage == "mql"
    lead, moves = run(command("accept", when=at(10)), lead=lead, model=model)
    assert moves == [("mql", "sql", "accept")]


def test_two_step_policy_goes_through_sal_and_the_second_filter():
    model = with_policy("two_step")
    lead, _ = qualified_sql(model)
    lead, moves = run(command("accept", when=at(10)), lead=lead, model=model)
    assert lead.stage == "sal" and moves == [("mql", "sal", "accept")]
    lead, moves = run(identify({"authority": "yes", "need": "crm", "timeline": "q1"}, when=at(11)),
                      lead=lead, model=model)
    assert lead.stage == "sql" and moves == [("sal", "sql", "pass_second_filter")]


def test_every_stage_of_the_machine_is_reachable_and_every_trigger_has_a_source():
    lc = lifecycle_for(MODEL)
    dests = {t["dest"] for t in TRANSITIONS}
    assert set(STAGES) - {"iql"} <= dests
    for stage in STAGES:
        assert isinstance(lc.allowed(stage), list)


def test_duplicate_message_and_command_count_once():
    ident, dl = identify(mid="same-1"), event(name="Content Downloaded", mid="same-2", when=at(1))
    once, _ = run(ident, dl)
    twice, moves = run(ident, dl, dl, ident)
    assert twice.interest_raw == once.interest_raw and twice.version == once.version
    assert len(moves) == 1
    won = command("won", cid="c-same", amount=10.0)
    lead, _ = run(won, lead=qualified_sql()[0])
    again, _ = run(won, lead=lead)
    assert again is lead and again.revenue == 10.0


def test_same_messages_in_the_same_order_give_the_same_lead():
    rnd = random.Random(3)
    names = ["Content Downloaded", "Email Opened", "Demo Requested", "Call Completed",
             "Webinar Attended", "Unsubscribed"]
    msgs = [identify()] + [
        event(name=rnd.choice(names), when=at(days=rnd.uniform(0, 60)),
              properties={"duration_seconds": rnd.randint(10, 900)}) for _ in range(60)]
    first, _ = run(*msgs)
    second, _ = run(*msgs)
    assert first.model_dump() == second.model_dump()
    assert first.snapshot() == second.snapshot()


def test_process_never_changes_the_lead_it_was_given():
    lead = new_lead("u-1", MODEL)
    before = lead.model_dump()
    process(lead, identify(), MODEL)
    process(lead, command("create"), MODEL)
    assert lead.model_dump() == before
