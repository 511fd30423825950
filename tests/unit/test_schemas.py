"""Validation at the edge: what goes to the DLQ and why."""

from __future__ import annotations

import orjson
import pytest

from schemas.commands import parse_command
from schemas.events import InvalidMessage, parse_event

GOOD = {"messageId": "m1", "type": "track", "event": "Form Submitted", "userId": "u-42",
        "anonymousId": "a-9", "timestamp": "2026-11-20T10:00:00Z", "properties": {"form": "x"},
        "context": {"campaign": {"source": "google"}}, "extra_field": 1}


def test_a_contract_example_parses_and_keys_by_user_id():
    e = parse_event(orjson.dumps(GOOD))
    assert e.lead_key == "u-42" and e.timestamp.tzinfo is not None
    assert e.campaign == {"source": "google"} and e.model_extra == {"extra_field": 1}


def test_anonymous_only_message_is_keyed_by_anonymous_id():
    e = parse_event(orjson.dumps({**GOOD, "userId": None}))
    assert e.lead_key == "a-9"


@pytest.mark.parametrize("raw,code,detail", [
    (b"not json", "invalid_json", ""),
    (b"[1, 2]", "not_an_object", "list"),
    (orjson.dumps({k: v for k, v in GOOD.items() if k != "messageId"}), "invalid_event", "messageId"),
    (orjson.dumps({**GOOD, "userId": None, "anonymousId": None}), "invalid_event", "neither userId"),
    (orjson.dumps({**GOOD, "timestamp": "yesterday"}), "invalid_event", "timestamp"),
    (orjson.dumps({**GOOD, "timestamp": "0001-01-01T00:00:00Z"}), "invalid_event", "outside"),
    (orjson.dumps({**GOOD, "type": "track", "event": None}), "invalid_event", "needs 'event'"),
    (orjson.dumps({**GOOD, "type": "rocket"}), "invalid_event", "type"),
    (orjson.dumps({**GOOD, "properties": {"blob": "x" * 40_000}}), "too_large", "exceeds"),
    (None, "empty", ""),
])
def test_invalid_messages_are_refused_with_a_reason(raw, code, detail):
    with pytest.raises(InvalidMessage) as exc:
        parse_event(raw)
    assert exc.value.code == code and detail in exc.value.detail


def test_a_sales_command_needs_a_known_action():
    cmd = {"command_id": "c1", "lead_id": "u", "action": "won", "occurred_at": "2026-11-21T09:00:00Z",
           "amount": 1200.0}
    assert parse_command(orjson.dumps(cmd)).amount == 1200.0
    with pytest.raises(InvalidMessage, match="action"):
        parse_command(orjson.dumps({**cmd, "action": "celebrate"}))
