"""The collector's request handling without HTTP: bodies, write keys, enrichment, refusals."""

from __future__ import annotations

import base64
import gzip
from datetime import datetime, timezone

import orjson
import pytest

from streams.web.requests import (MAX_REQUEST_BYTES, Refused, enrich, messages_of, prepare, read_body,
                             write_key_of)
from schemas.events import InvalidMessage, parse_event
from schemas.limits import MAX_DEPTH, MAX_KEYS, MAX_STRING, MAX_UNKNOWN_FIELDS

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
PAGE = {"messageId": "m1", "anonymousId": "a-1", "timestamp": "2026-11-23T11:00:00Z",
        "properties": {"path": "/pricing"}}


def refused(fn, *args) -> Refused:
    with pytest.raises(Refused) as exc:
        fn(*args)
    return exc.value


def test_a_gzip_body_is_inflated():
    body = {"batch": [PAGE]}
    assert read_body(gzip.compress(orjson.dumps(body)), "gzip") == body


@pytest.mark.parametrize("raw,encoding,status,code", [
    (b"{not json", None, 400, "invalid_json"),
    (b"[1]", None, 400, "not_an_object"),
    (b"not gzip at all", "gzip", 400, "invalid_gzip"),
    (gzip.compress(b"{}")[:-6], "gzip", 400, "invalid_gzip"),
    (b"{}", "br", 400, "unsupported_encoding"),
    (b" " * (MAX_REQUEST_BYTES + 1), None, 413, "request_too_large"),
    (gzip.compress(b" " * (MAX_REQUEST_BYTES + 1)), "gzip", 413, "request_too_large"),
])
def test_bad_bodies_are_refused_with_a_code(raw, encoding, status, code):
    exc = refused(read_body, raw, encoding)
    assert (exc.status, exc.code) == (status, code) and exc.message


def test_the_write_key_is_the_basic_username_or_the_body_field():
    basic = "Basic " + base64.b64encode(b"wk_123:").decode()
    assert write_key_of(basic, None) == "wk_123"
    assert write_key_of(None, {"writeKey": "wk_456"}) == "wk_456"
    assert write_key_of(basic, {"writeKey": "other"}) == "wk_123"
    assert write_key_of("Basic !!!", None) is None and write_key_of(None, {}) is None


def test_clock_skew_is_corrected_from_sent_at():
    # the tracker's clock is 10 minutes fast: it stamped 11:10 and sent at 11:15 (its clock)
    msg = {**PAGE, "timestamp": "2026-11-23T11:10:00Z", "sentAt": "2026-11-23T11:15:00Z"}
    out = enrich(msg, NOW)
    assert out["receivedAt"] == "2026-11-23T12:00:00.000Z"
    assert out["originalTimestamp"] == "2026-11-23T11:10:00Z"
    assert out["timestamp"] == "2026-11-23T11:55:00.000Z"
    assert msg["timestamp"] == "2026-11-23T11:10:00Z"   # the input is not changed


def test_without_sent_at_the_timestamp_is_kept_and_without_one_it_is_received_at():
    assert enrich(PAGE, NOW)["timestamp"] == "2026-11-23T11:00:00.000Z"
    no_time = {k: v for k, v in PAGE.items() if k != "timestamp"}
    assert enrich(no_time, NOW)["timestamp"] == "2026-11-23T12:00:00.000Z"
    assert refused(enrich, {**PAGE, "timestamp": "yesterday"}, NOW).code == "invalid_timestamp"


def test_a_skew_correction_out_of_the_calendar_is_refused_not_a_crash():
    msg = {**PAGE, "timestamp": "9999-12-31T00:00:00Z", "sentAt": "0001-01-01T00:00:00Z"}
    assert refused(enrich, msg, NOW).code == "invalid_timestamp"


def test_a_message_without_message_id_gets_one():
    out = enrich({k: v for k, v in PAGE.items() if k != "messageId"}, NOW)
    assert out["messageId"].startswith("funnel-")


def test_a_batch_is_keyed_by_lead_and_shares_its_context():
    body = {"batch": [{**PAGE, "type": "page"},
                      {"type": "identify", "userId": "u-1", "anonymousId": "a-1",
                       "messageId": "m2", "traits": {"email": "x@acme.io"}}],
            "context": {"library": {"name": "analytics-python"}}, "sentAt": "2026-11-23T11:59:00Z"}
    records = prepare("batch", body, NOW, 32768).records
    assert [k for k, _ in records] == [b"a-1", b"u-1"]
    first = orjson.loads(records[0][1])
    assert first["context"]["library"]["name"] == "analytics-python"
    assert parse_event(records[1][1]).traits["email"] == "x@acme.io"


def test_a_single_call_takes_its_type_from_the_endpoint():
    (key, value), = prepare("track", {**PAGE, "event": "Demo Requested", "userId": "u-9"}, NOW,
                            32768).records
    assert key == b"u-9" and orjson.loads(value)["type"] == "track"


@pytest.mark.parametrize("bad,code,needle", [
    ({"type": "page", "messageId": "x"}, "missing_id", "batch[1]"),
    ({**PAGE, "type": "page", "properties": {f"p{i}": "x" * 8000 for i in range(5)}},
     "event_too_large", "batch[1]"),
    (1, "invalid_event", "batch[1]"),
    ({**PAGE, "type": "rocket"}, "invalid_event", "type"),
    ({**PAGE, "type": "page", "userId": "u\x00"}, "limit_exceeded", "no_nul"),
])
def test_a_bad_event_is_rejected_alone_and_its_neighbours_are_taken(bad, code, needle):
    good = {**PAGE, "type": "page", "messageId": "m-good"}
    out = prepare("batch", {"batch": [good, bad, {**good, "messageId": "m-after"}]}, NOW, 32768)
    assert [orjson.loads(v)["messageId"] for _, v in out.records] == ["m-good", "m-after"]
    (rejected,) = out.rejected
    assert rejected.index == 1 and rejected.code == code and needle in rejected.message
    assert rejected.value == orjson.dumps(bad), "the dead letter carries the event as sent"


@pytest.mark.parametrize("body,code,needle", [
    ({"batch": []}, "invalid_batch", "empty"),
    ({"batch": "no"}, "invalid_batch", "array"),
])
def test_a_request_without_a_batch_is_refused_whole(body, code, needle):
    exc = refused(prepare, "batch", body, NOW, 32768)
    assert exc.status == 400 and exc.code == code and needle in exc.message


def test_the_short_paths_of_the_browser_library_are_the_same_endpoints():
    (_, value), = prepare("t", {**PAGE, "event": "Ad Clicked", "userId": "u-1"}, NOW,
                          32768).records
    assert orjson.loads(value)["type"] == "track"
    assert len(prepare("import", {"batch": [{**PAGE, "type": "page"}]}, NOW, 32768).records) == 1


def test_unknown_endpoints_are_404():
    assert refused(messages_of, "pixel", {}).status == 404


def nested(depth: int) -> dict:
    d: dict = {"leaf": 1}
    for _ in range(depth):
        d = {"n": d}
    return d


@pytest.mark.parametrize("props,limit", [
    ({"s": "x" * (MAX_STRING + 1)}, "max_string"),
    (nested(MAX_DEPTH + 1), "max_depth"),
    ({f"k{i}": i for i in range(MAX_KEYS + 1)}, "max_keys"),
    ({"k" * 300: 1}, "max_key"),
    ({"list": list(range(201))}, "max_items"),
])
def test_every_limit_refusal_names_the_limit(props, limit):
    msg = {**PAGE, "type": "page", "properties": props}
    with pytest.raises(InvalidMessage) as exc:
        parse_event(orjson.dumps(msg), max_bytes=10**7)
    assert exc.value.code == "limit_exceeded" and limit in exc.value.detail
    assert "properties" in exc.value.detail
    (rejected,) = prepare("batch", {"batch": [msg]}, NOW, 10**7).rejected
    assert rejected.code == "limit_exceeded" and limit in rejected.message


def test_unknown_fields_are_kept_but_bounded():
    few = {**PAGE, "type": "page", **{f"x{i}": i for i in range(3)}}
    assert parse_event(orjson.dumps(few)).model_extra == {"x0": 0, "x1": 1, "x2": 2}
    many = {**PAGE, "type": "page", **{f"x{i}": i for i in range(MAX_UNKNOWN_FIELDS + 1)}}
    with pytest.raises(InvalidMessage, match="max_unknown_fields"):
        parse_event(orjson.dumps(many))


def test_the_quick_pass_over_the_limits_agrees_with_the_walk_that_names_them():
    import random

    from schemas.limits import MAX_ITEMS, LimitExceeded, _text, _walk, within

    def walk_refuses(message: dict) -> bool:
        try:
            for key, value in message.items():
                _text(key, "message")
                _walk(value, key, 0)
        except LimitExceeded:
            return True
        return False

    rng = random.Random(5)
    edges = ["ok", "x" * MAX_STRING, "x" * (MAX_STRING + 1), "a\x00b", 1e15, -1e15, 1e15 + 1,
             float("nan"), float("inf"), 10**16, True, None, 3, 2.5, [], {}]

    def value(depth: int):
        roll = rng.random()
        if roll < 0.02:   # wide: at, or just past, a size limit (leaves only)
            n = rng.choice([MAX_KEYS, MAX_KEYS + 1])
            return {f"w{i}": rng.choice(edges[:2]) for i in range(n)} if roll < 0.01 \
                else [1] * (n - MAX_KEYS + MAX_ITEMS)
        if depth < MAX_DEPTH + 2 and roll < 0.25:
            return {rng.choice(["k" * 256, "k" * 257, "n\x00"]) if rng.random() < 0.1
                    else f"k{i}": value(depth + 1) for i in range(rng.randint(0, 3))}
        if depth < MAX_DEPTH + 2 and roll < 0.4:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return rng.choice(edges)

    refused = 0
    for _ in range(3000):
        message = {"type": "page", "properties": value(0), "context": value(0)}
        if rng.random() < 0.05:
            message["bad\x00key"] = 1
        assert within(message) != walk_refuses(message), message
        refused += walk_refuses(message)
    assert 300 < refused < 2700   # both kinds were tried, often


def test_nesting_within_the_limit_is_accepted():
    msg = {**PAGE, "type": "page", "properties": nested(MAX_DEPTH - 2)}
    assert parse_event(orjson.dumps(msg)).properties["n"]


# --- campaign spend (funnel costs import) ---------------------------------------------------

def test_a_costs_file_takes_days_iso_weeks_and_months():
    from datetime import date
    from decimal import Decimal

    from schemas.costs import parse_costs

    rows = parse_costs("campaign,period,amount,currency\nq4-launch,2026-11,1200.50,usd\n"
                       "q4-launch,2026-W47,300,EUR\nretarget,2026-11-20,45,USD\n")
    assert [(r.grain, r.period_start, r.amount, r.currency) for r in rows] == [
        ("month", date(2026, 11, 1), Decimal("1200.50"), "USD"),
        ("week", date(2026, 11, 16), Decimal("300"), "EUR"),
        ("day", date(2026, 11, 20), Decimal("45"), "USD")]


def test_a_bad_costs_file_is_refused_naming_every_bad_line():
    from schemas.costs import BadCosts, parse_costs

    with pytest.raises(BadCosts) as exc:
        parse_costs("campaign,period,amount,currency\nx,2026-13,1,USD\n,2026-11,1,USD\n"
                    "y,2026-11,-5,USD\nz,2026-11,abc,USD\nw,2026-11,1,dollars\nok,2026-11,1,USD\n")
    assert [p.split(":")[0] for p in exc.value.problems] == [
        "line 2", "line 3", "line 4", "line 5", "line 6"]
    assert "month must be in 1..12" in exc.value.problems[0]
    with pytest.raises(BadCosts, match="missing column"):
        parse_costs("campaign,when,amount,currency\n")


def test_an_ad_spend_reported_event_is_spend_not_an_interaction():
    from datetime import date
    from decimal import Decimal

    from schemas.costs import spend_of

    base = {"messageId": "s1", "type": "track", "event": "Ad Spend Reported",
            "anonymousId": "ads", "timestamp": "2026-11-23T00:00:00Z",
            "properties": {"campaign": "q4", "period": "2026-W47", "amount": "120.5",
                           "currency": "eur"}}
    spend = spend_of(parse_event(orjson.dumps(base)))
    assert spend is not None and (spend.campaign, spend.grain, spend.period_start, spend.amount,
                                  spend.currency) == ("q4", "week", date(2026, 11, 16),
                                                      Decimal("120.5"), "EUR")
    assert spend_of(parse_event(orjson.dumps({**base, "event": "Ad Clicked"}))) is None
    for props, needle in (({"period": "2026-11", "amount": 1, "currency": "USD"}, "campaign"),
                          ({"campaign": "q", "period": "x", "amount": 1, "currency": "USD"},
                           "period"),
                          ({"campaign": "q", "period": "2026-11", "amount": -1, "currency": "USD"},
                           "amount"),
                          ({"campaign": "q", "period": "2026-11", "amount": 1, "currency": "$"},
                           "currency")):
        with pytest.raises(ValueError, match=needle):
            spend_of(parse_event(orjson.dumps({**base, "properties": props})))


# --- hostile input, many times over (the HTTP fuzz in tests/integration does fewer) -----------

from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.datetimes().map(lambda d: d.isoformat()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20)
SPEC = st.sampled_from(["messageId", "type", "timestamp", "userId", "anonymousId", "event",
                        "properties", "traits", "context", "sentAt", "originalTimestamp",
                        "previousId", "batch", "writeKey"])
BODY = st.one_of(st.dictionaries(SPEC, JSON, max_size=6),
                 st.lists(st.dictionaries(SPEC, JSON, max_size=6), max_size=3).map(
                     lambda b: {"batch": b}),
                 st.dictionaries(st.text(max_size=8), JSON, max_size=4))


@hsettings(max_examples=400, deadline=None)
@given(endpoint=st.sampled_from(["batch", "track", "page", "identify", "alias", "t", "x"]),
       body=BODY)
def test_any_body_is_refused_with_a_code_or_each_event_taken_or_rejected_with_one(endpoint, body):
    try:
        out = prepare(endpoint, body, NOW, 32768)
    except Refused as exc:
        assert exc.status in (400, 404) and exc.code and exc.message
        return
    for key, value in out.records:   # what is taken is valid on the topic too
        assert parse_event(value).lead_key.encode() == key
    for r in out.rejected:           # what is not has a reason and its place
        assert r.code and f"batch[{r.index}]" in r.message and r.value
    n = len(body["batch"]) if endpoint == "batch" else 1
    assert len(out.records) + len(out.rejected) == n
