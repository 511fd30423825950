"""A common message's event values set directly (``schemas.event_values``) are what pydantic's
validation of the same message gives; anything else is left to pydantic."""

from __future__ import annotations

import orjson
import pytest

from schemas.event_values import event_values
from schemas.events import InteractionEvent, InvalidMessage, parse_event, validate_event
from streams.simulate import generate

BASE = {"messageId": "m-1", "type": "page", "timestamp": "2026-10-13T18:34:11.704214Z",
        "userId": "u-1", "properties": {"path": "/"}}


def both(message: dict) -> tuple[InteractionEvent | None, InteractionEvent | None]:
    """(the event through ``parse_event``'s direct path or None where it left the message to
    pydantic, pydantic's own event or None where pydantic refused it)."""
    raw = orjson.dumps(message)
    try:
        validated = InteractionEvent.model_validate(orjson.loads(raw))
    except ValueError:
        validated = None
    direct = parse_event(raw) if event_values(orjson.loads(raw)) is not None else None
    return direct, validated


def same(a: InteractionEvent, b: InteractionEvent) -> bool:
    return (a.__dict__ == b.__dict__ and list(a.__dict__) == list(b.__dict__)
            and a.__pydantic_extra__ == b.__pydantic_extra__
            and a.model_fields_set == b.model_fields_set
            and a.model_dump_json() == b.model_dump_json()
            and a.timestamp.tzinfo == b.timestamp.tzinfo and a == b)


def test_every_simulated_message_takes_the_direct_path_and_gives_pydantics_event():
    traffic = generate(300, 30, seed=4)
    checked = 0
    for _, message in traffic.events:
        direct, validated = both(message)
        assert direct is not None and validated is not None, message
        assert same(direct, validated), message
        checked += 1
    assert checked > 1500


@pytest.mark.parametrize("change", [
    {}, {"anonymousId": ""}, {"anonymousId": None}, {"properties": None}, {"traits": None},
    {"context": {"page": {"path": "/x"}, "campaign": {"name": "c"}}},
    {"timestamp": "2026-10-13T20:34:11+02:00"}, {"timestamp": "2026-10-13T18:34:11Z"},
    {"timestamp": "2026-10-13T18:34:11.7Z"}, {"timestamp": "2026-10-13T18:34:11.123-05:30"},
    {"timestamp": "2026-10-13T18:34:11-00:00"}, {"event": "", "name": "Home"},
    {"type": "track", "event": "Signed Up"}, {"type": "alias", "previousId": "old"},
    {"sentAt": "x", "integrations": {"All": True}, "zz": [1, None]},
    {"userId": "é" * 256}, {"messageId": "m" * 256},
])
def test_common_messages_give_pydantics_event(change):
    direct, validated = both({**BASE, **change})
    assert direct is not None and validated is not None
    assert same(direct, validated)


@pytest.mark.parametrize("change", [
    {"userId": 42}, {"userId": 4.5}, {"anonymousId": True}, {"messageId": 7},
    {"messageId": ""}, {"userId": "u" * 257}, {"event": "e" * 257}, {"type": "Track"},
    {"type": "track"}, {"type": "alias"}, {"userId": None}, {"userId": ""},
    {"properties": []}, {"traits": "x"}, {"timestamp": 1760380451},
    {"timestamp": "2026-10-13 18:34:11Z"}, {"timestamp": "2026-10-13T18:34:11"},
    {"timestamp": "2026-10-13T18:34:11.1234567Z"}, {"timestamp": "2026-02-30T18:34:11Z"},
    {"timestamp": "2026-10-13T24:00:00Z"}, {"timestamp": "1969-12-31T23:59:59Z"},
    {"timestamp": "٢٠٢٦-10-13T18:34:11Z"}, {"timestamp": "2026-10-13T18:34:11+24:00"},
])
def test_other_messages_are_left_to_pydantic_which_gives_or_refuses_the_same(change):
    message = {**BASE, **change}
    assert event_values(orjson.loads(orjson.dumps(message))) is None
    direct, validated = both(message)
    assert direct is None
    try:
        parsed = parse_event(orjson.dumps(message))
    except InvalidMessage:
        assert validated is None
    else:
        assert validated is not None and same(parsed, validated)


def test_an_event_holds_objects_of_its_own_apart_from_other_messages_and_the_callers():
    a = parse_event(orjson.dumps(BASE))
    b = parse_event(orjson.dumps(BASE))
    assert a.properties == b.properties and a.properties is not b.properties
    assert a.traits is not b.traits   # each its own empty object, as pydantic's default
    with pytest.raises(Exception):
        a.userId = "other"   # frozen, as validated events are
    message = {**BASE, "properties": {"path": "/"}}   # the collector's: it keeps its dict
    c = validate_event(message)
    message["properties"]["path"] = "/changed"
    assert c.properties == {"path": "/"} and event_values(message) is not None


def test_the_direct_path_knows_every_field_of_the_model():
    """A field added to ``InteractionEvent`` and not to the direct path would land among the
    extra fields there: the two lists are one."""
    from schemas.event_values import FIELDS

    assert FIELDS == set(InteractionEvent.model_fields)
