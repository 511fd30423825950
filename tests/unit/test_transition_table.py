"""The whole transition table, written out by hand from the contract and the issue: every sales
command from every stage under every policy, allowed or refused; the automatic moves per policy.
"""

from __future__ import annotations

import pytest

from funnel.config import default_model_text, parse_model
from funnel.decide import CommandRefused, new_lead, process
from funnel.lifecycle import COMMANDS, STAGES
from tests.unit.helpers import at, command, event, identify

POLICIES = ["auto", "sales_accept", "two_step"]
SAME = "(stays)"   # allowed, no stage change: an acknowledgement or a repeat order

# stage -> action -> where it leads (missing: refused). ``accept`` from mql depends on the policy.
TABLE: dict[str, dict[str, str]] = {
    "iql": {"create": "sql", "disqualify": "disqualified"},
    "mql": {"accept": "sql|sal", "reject": "recycled", "disqualify": "disqualified",
            "won": "customer"},
    "sal": {"reject": "recycled", "disqualify": "disqualified", "won": "customer",
            "lost": "recycled"},
    "sql": {"accept": SAME, "reject": "recycled", "disqualify": "disqualified",
            "won": "customer", "lost": "recycled"},
    "customer": {"won": SAME},
    "recycled": {"disqualify": "disqualified", "reopen": "sql"},
    "disqualified": {"reopen": "sql"},
}

CASES = [(p, s, a) for p in POLICIES for s in STAGES for a in COMMANDS]


def model_for(policy: str):
    return parse_model(default_model_text().replace("policy: auto", f"policy: {policy}"))


MODELS = {p: model_for(p) for p in POLICIES}


def expected(policy: str, stage: str, action: str) -> str | None:
    dest = TABLE[stage].get(action)
    if dest == "sql|sal":
        return "sal" if policy == "two_step" else "sql"
    return stage if dest == SAME else dest


@pytest.mark.parametrize("policy,stage,action", CASES)
def test_every_command_from_every_stage_under_every_policy(policy, stage, action):
    model = MODELS[policy]
    lead = new_lead("u-1", model).model_copy(update={"stage": stage, "version": 3})
    dest = expected(policy, stage, action)
    cmd = command(action, amount=10.0, actor="rep@x.io", reason="why", when=at(5))
    if dest is None:
        with pytest.raises(CommandRefused) as refused:
            process(lead, cmd, model)
        assert f"'{stage}'" in refused.value.reason and f"'{action}'" in refused.value.reason
        return
    new, moves = process(lead, cmd, model)
    assert new.stage == dest
    if dest == stage:
        assert moves == []
    else:
        assert [(m.from_stage, m.to_stage, m.trigger, m.actor, m.reason, m.occurred_at)
                for m in moves] == [(stage, dest, action, "rep@x.io", "why", at(5))]
        assert new.stage_entered_at == at(5) and new.transitions[-1] == moves[-1]
    assert new.last_sales_action_at == at(5)
    if action == "won":
        assert new.orders == 1 and new.revenue == 10.0


def test_the_table_covers_every_stage_and_command():
    assert set(TABLE) == set(STAGES)
    assert len(CASES) == 3 * 7 * 7
    refused = sum(expected(p, s, a) is None for p, s, a in CASES)
    assert 0 < refused < len(CASES)


def hot_known_lead(model, *extra):
    lead = new_lead("u-1", model)
    for m in (identify(), event(name="Content Downloaded", when=at(1)),
              event(name="Demo Requested", when=at(2)), event(name="Trial Started", when=at(3)),
              *extra):
        lead, _ = process(lead, m, model)
    return lead


@pytest.mark.parametrize("policy,stage", [("auto", "sql"), ("sales_accept", "mql"),
                                          ("two_step", "mql")])
def test_automatic_sql_only_under_the_auto_policy(policy, stage):
    assert hot_known_lead(MODELS[policy]).stage == stage


@pytest.mark.parametrize("policy", POLICIES)
def test_purchase_makes_a_customer_from_every_stage_but_customer(policy):
    model = MODELS[policy]
    for stage in STAGES:
        lead = new_lead("u-1", model).model_copy(update={"stage": stage})
        new, moves = process(lead, event(name="Order Completed", properties={"revenue": 5}), model)
        assert new.stage == "customer" and new.orders == 1
        assert [m.trigger for m in moves] == ([] if stage == "customer" else ["purchase"])


def test_two_step_walks_through_sal_and_a_qualification_survey():
    model = MODELS["two_step"]
    lead = hot_known_lead(model)
    lead, moves = process(lead, command("accept", when=at(4)), model)
    assert lead.stage == "sal" and lead.sal_at == at(4)
    lead, moves = process(lead, event(name="Form Submitted", when=at(5),
                                      properties={"form": "qualification-survey"}), model)
    assert lead.stage == "sql" and [m.trigger for m in moves] == ["pass_second_filter"]
    assert lead.sql_at == at(5)


def test_two_step_accept_with_the_second_filter_already_passed_goes_on_to_sql():
    model = MODELS["two_step"]
    lead = hot_known_lead(model, identify({**dict(budget=1, authority="y", need="y",
                                                  timeline="q1")}, when=at(3.5)))
    lead, moves = process(lead, command("accept", when=at(4)), model)
    assert [(m.from_stage, m.to_stage) for m in moves] == [("mql", "sal"), ("sal", "sql")]


def test_a_recycled_lead_qualifies_again_when_its_behaviour_says_so():
    model = MODELS["auto"]
    lead = hot_known_lead(model)
    lead, _ = process(lead, command("reject", when=at(10)), model)
    lead, moves = process(lead, event(name="Webinar Attended", when=at(11)), model)
    assert lead.stage == "mql" and [m.trigger for m in moves] == ["qualify_marketing"]


def test_a_refused_command_is_not_remembered_so_a_fixed_retry_is_not_a_duplicate():
    model = MODELS["auto"]
    lead = new_lead("u-1", model)
    cmd = command("accept", cid="c-retry", when=at(1))
    with pytest.raises(CommandRefused):
        process(lead, cmd, model)
    lead = lead.model_copy(update={"stage": "mql"})
    new, moves = process(lead, cmd, model)
    assert new.stage == "sql"
