"""Property tests of the pure core against odd but valid input: whatever a valid message carries
(lists where strings are expected, years 1 and 9999, huge amounts), ``process`` and ``tick`` either
apply it or refuse a command; they never raise anything else. (A trait sent as a list made the
membership rules raise before; in the pipeline that dead-lettered a valid message.)"""

from __future__ import annotations

from datetime import timezone

import orjson
from hypothesis import given, settings, strategies as st

from funnel.config import load_model
from funnel.decide import CommandRefused, new_lead, process
from funnel.timers import tick
from schemas.commands import parse_command
from schemas.events import InvalidMessage, parse_event

MODEL = load_model()
UTC = st.datetimes(timezones=st.just(timezone.utc))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | UTC.map(lambda d: d.isoformat()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=15)
EVENT = st.fixed_dictionaries(
    {"messageId": st.text(min_size=1, max_size=5),
     "type": st.sampled_from(["page", "track", "identify", "alias", "screen", "group"]),
     "userId": st.just("x"), "timestamp": UTC.map(lambda d: d.isoformat())},
    optional={
        "event": st.sampled_from(["Demo Requested", "Content Downloaded", "Order Completed",
                                  "Call Completed", "Unsubscribed", "Trial Started",
                                  "Form Submitted", "Email Clicked"]),
        "previousId": st.text(min_size=1, max_size=4),
        "properties": st.dictionaries(st.sampled_from(
            ["path", "url", "revenue", "currency", "duration_seconds", "form"]), JSON, max_size=3),
        "traits": st.dictionaries(st.sampled_from(
            ["email", "company", "employees", "budget", "industry", "country", "job_title",
             "referred_by"]), JSON, max_size=4),
        "context": st.dictionaries(st.sampled_from(["campaign", "page", "traits"]), JSON,
                                   max_size=2)})
COMMAND = st.fixed_dictionaries(
    {"command_id": st.text(min_size=1, max_size=5), "lead_id": st.just("x"),
     "action": st.sampled_from(["create", "accept", "reject", "disqualify", "won", "lost",
                                "reopen"]),
     "occurred_at": UTC.map(lambda d: d.isoformat())},
    optional={"amount": st.floats(min_value=0, allow_nan=False, allow_infinity=False),
              "currency": st.text(max_size=4),
              "traits": st.dictionaries(st.sampled_from(["email", "budget", "industry"]), JSON,
                                        max_size=2)})


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(st.one_of(EVENT, COMMAND), min_size=1, max_size=6), now=UTC)
def test_odd_valid_messages_are_applied_or_refused_never_crash(messages, now):
    lead = new_lead("x", MODEL)
    for m in messages:
        raw = orjson.dumps(m)
        try:
            parsed = parse_command(raw) if "command_id" in m else parse_event(raw)
        except InvalidMessage:
            continue
        try:
            lead, _ = process(lead, parsed, MODEL)
        except CommandRefused:
            continue
    assert lead.events_count <= len(messages)
    ticked, _ = tick(lead, now, MODEL, cooling=True, deadlines=True)
    assert ticked.lead_id == "x"


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | JSON.map(orjson.dumps))
def test_any_bytes_parse_or_are_refused_with_a_reason(raw):
    try:
        parse_event(raw)
    except InvalidMessage as exc:
        assert exc.code and exc.detail is not None
