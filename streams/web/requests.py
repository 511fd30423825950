"""What the HTTP collector does to a request, without the HTTP: the Segment HTTP Tracking API.

``read_body`` (gzip, size, JSON), ``write_key_of`` (HTTP Basic username or ``writeKey``),
``messages_of`` (a batch or one call), ``enrich`` (``receivedAt``, clock-skew correction, a
``messageId`` when the client sent none) and ``accept`` (the input limits and the Segment Spec;
the partition key). As Segment does, a request is refused (a :class:`Refused` with the HTTP
status, a ``code`` and a ``message``) only for what concerns all of it: a body that is not JSON
or too large, no write key, no such endpoint, no batch. One bad event is a :class:`Rejected`:
dead-lettered with its reason, counted in the answer, and its neighbours are taken.
"""

from __future__ import annotations

import base64
import binascii
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from schemas.events import InvalidMessage, validate_event

MAX_REQUEST_BYTES = 4 * 1024 * 1024     # a request body, compressed or not, and once inflated
ENDPOINTS = ("batch", "track", "page", "identify", "alias", "screen", "group")
# the short paths Segment's browser library (analytics.js) posts to, and the old batch path
ALIASES = {"t": "track", "p": "page", "i": "identify", "a": "alias", "s": "screen",
           "g": "group", "b": "batch", "import": "batch"}


class Refused(Exception):
    """A request the collector does not accept: HTTP ``status``, JSON ``{code, message}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Rejected:
    """One event of a request that is not taken: its place, reason and bytes (for the DLQ)."""

    index: int
    code: str
    message: str
    key: bytes | None
    value: bytes

    def body(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclass
class Prepared:
    """A request's events: ``records`` (key, value) for the topic, ``rejected`` for the DLQ."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def read_body(raw: bytes, content_encoding: str | None,
              max_bytes: int = MAX_REQUEST_BYTES) -> dict[str, Any]:
    """The request's JSON object; gzip (``Content-Encoding: gzip``) is inflated first."""
    if len(raw) > max_bytes:
        raise Refused(413, "request_too_large", f"the body exceeds {max_bytes} bytes")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        raw = _gunzip(raw, max_bytes)
    elif encoding not in ("identity", ""):
        raise Refused(400, "unsupported_encoding",
                      f"Content-Encoding {encoding!r} is not supported (gzip is)")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, "invalid_json", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Refused(400, "not_an_object",
                      f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _gunzip(raw: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise Refused(400, "invalid_gzip", f"the body is not valid gzip: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise Refused(413, "request_too_large", f"the inflated body exceeds {max_bytes} bytes")
    if not inflater.eof:
        raise Refused(400, "invalid_gzip", "the gzip body is truncated")
    return out


def basic_username(authorization: str | None) -> str | None:
    """The username of an HTTP Basic ``Authorization`` header (the Segment write key)."""
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def write_key_of(authorization: str | None, body: dict[str, Any] | None) -> str | None:
    key = basic_username(authorization)
    if key is None and body is not None and isinstance(body.get("writeKey"), str):
        key = body["writeKey"] or None
    return key


def messages_of(endpoint: str, body: dict[str, Any]) -> list[Any]:
    """The messages of a request: ``/v1/batch`` carries ``batch``, the others are one message
    whose ``type`` is the endpoint's. Batch-level ``context``/``integrations`` are defaults."""
    endpoint = ALIASES.get(endpoint, endpoint)
    if endpoint not in ENDPOINTS:
        raise Refused(404, "unknown_endpoint", f"no endpoint /v1/{endpoint}")
    if endpoint != "batch":
        return [{**body, "type": endpoint}]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise Refused(400, "invalid_batch", "'batch' must be an array of messages")
    if not batch:
        raise Refused(400, "invalid_batch", "'batch' is empty")
    out = []
    for msg in batch:
        if not isinstance(msg, dict):
            out.append(msg)   # rejected on its own by ``prepare``
            continue
        for shared in ("context", "integrations"):
            if isinstance(body.get(shared), dict) and shared not in msg:
                msg = {**msg, shared: body[shared]}
        if "sentAt" not in msg and "sentAt" in body:
            msg = {**msg, "sentAt": body["sentAt"]}
        out.append(msg)
    return out


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time (``Z`` allowed; naive means UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def enrich(msg: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    """Segment's server-side fields: ``receivedAt``; ``originalTimestamp`` (the tracker's
    clock) and ``timestamp = receivedAt - (sentAt - originalTimestamp)``, which corrects the
    tracker's clock skew; a ``messageId`` when none was sent. The input is not changed."""
    out = dict(msg)
    out.pop("writeKey", None)
    out["receivedAt"] = _iso(received_at)
    original_raw = msg.get("originalTimestamp") or msg.get("timestamp")
    original, sent = parse_time(original_raw), parse_time(msg.get("sentAt"))
    if original_raw is not None and original is None:
        raise Refused(400, "invalid_timestamp",
                      f"timestamp {str(original_raw)[:64]!r} is not an ISO-8601 time")
    if original is None:
        out["timestamp"] = _iso(received_at)
    else:
        out["originalTimestamp"] = original_raw
        try:
            out["timestamp"] = _iso(received_at - (sent - original) if sent is not None
                                    else original)
        except OverflowError:
            raise Refused(400, "invalid_timestamp", f"sentAt {str(msg.get('sentAt'))[:64]!r} "
                          f"and timestamp {str(original_raw)[:64]!r} are centuries apart") from None
    if not msg.get("messageId"):
        out["messageId"] = f"funnel-{uuid.uuid4()}"
    return out


def accept(msg: dict[str, Any], index: int, max_event_bytes: int) -> tuple[bytes, bytes]:
    """(key, value) of one enriched message for ``funnel.events``, or :class:`Refused`."""
    where = f"batch[{index}]"
    try:
        value = orjson.dumps(msg)
    except TypeError as exc:   # e.g. an integer beyond 64 bits from a lenient JSON decoder
        raise Refused(400, "invalid_event", f"{where}: {exc}") from None
    if len(value) > max_event_bytes:
        raise Refused(400, "event_too_large",
                      f"{where}: {len(value)} bytes exceeds the limit of {max_event_bytes} per event")
    if all(msg.get(k) in (None, "") for k in ("userId", "anonymousId")):
        raise Refused(400, "missing_id", f"{where}: neither userId nor anonymousId is set")
    try:
        event = validate_event(msg)
    except InvalidMessage as exc:
        raise Refused(400, exc.code, f"{where}: {exc.detail}") from None
    return event.lead_key.encode(), value


def prepare(endpoint: str, body: dict[str, Any], received_at: datetime,
            max_event_bytes: int) -> Prepared:
    """Every message of a request: the valid ones ready for the topic, the others rejected
    each with its reason (``batch[i]`` in the message)."""
    out = Prepared()
    for i, msg in enumerate(messages_of(endpoint, body)):
        try:
            if not isinstance(msg, dict):
                raise Refused(400, "invalid_event", f"batch[{i}] is not a JSON object")
            out.records.append(accept(enrich(msg, received_at), i, max_event_bytes))
        except Refused as exc:
            where = f"batch[{i}]"
            text = exc.message if exc.message.startswith(where) else f"{where}: {exc.message}"
            out.rejected.append(Rejected(i, exc.code, text, _key_of(msg), _bytes(msg)))
    return out


def _key_of(msg: Any) -> bytes | None:
    if isinstance(msg, dict):
        for name in ("userId", "anonymousId"):
            if isinstance(msg.get(name), str) and msg[name]:
                return msg[name].encode("utf-8", "replace")
    return None


def _bytes(msg: Any) -> bytes:
    try:
        return orjson.dumps(msg)
    except TypeError:   # e.g. an integer beyond 64 bits from a lenient JSON decoder
        return repr(msg).encode("utf-8", "replace")
