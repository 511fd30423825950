"""The HTTP collector: a drop-in destination for Segment-compatible trackers.

``POST /v1/batch|track|page|identify|alias|screen|group`` with the write key as HTTP Basic
username (or ``writeKey`` in the body), gzip or plain JSON. The events are enriched
(``receivedAt``, clock-skew correction), checked against the input limits and the Segment Spec,
keyed by lead (``userId``, else ``anonymousId``) and published to ``funnel.events``; the answer
is 200 only once the broker has acknowledged every one of them (acks=all), so nothing answered
200 is lost. A request the broker cannot take in time, or one that would put more than
``FUNNEL_COLLECTOR_MAX_INFLIGHT`` bytes in flight, gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from datetime import datetime, timezone
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily

from streams.records import Record, Source, dead_letter_record
from streams.web.requests import (MAX_REQUEST_BYTES, Prepared, Refused, prepare, read_body,
                                  write_key_of)
from streams.settings import Settings

log = logging.getLogger("funnel.collector")

CORS = {"Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding"}
COLLECTOR = web.AppKey("collector", "Collector")


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
          ) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers={**CORS, **(headers or {})})


class Collector:
    """The publishing side: one producer, a bound on bytes in flight, counters."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic("events")
        self.dlq = settings.topic("events.dlq")
        self.keys = [k.encode() for k in settings.write_key_list()]
        self.producer: AIOKafkaProducer | None = None
        self.inflight = 0
        self.counts: Counter[str] = Counter()

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers(), acks="all", linger_ms=2,
            client_id="funnel-collector", max_request_size=MAX_REQUEST_BYTES + 65536,
            compression_type=self.settings.compression_type(),
            request_timeout_ms=int(self.settings.collector_ack_timeout * 1000))
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def authorized(self, key: str | None) -> bool:
        if not key:
            return False
        given = key.encode()
        return any(hmac.compare_digest(given, k) for k in self.keys)

    def records_of(self, prepared: Prepared) -> list[Record]:
        """The request's events for the topic, and a dead letter for each rejected one (its
        source: the events topic, partition and offset -1, header ``source: collector``)."""
        out = [Record(self.topic, k, v) for k, v in prepared.records]
        for r in prepared.rejected:
            letter = dead_letter_record(self.dlq, Source(self.topic, -1, -1, r.key, r.value),
                                        r.code, r.message)
            letter.headers.append(("source", b"collector"))
            out.append(letter)
        return out

    async def publish(self, records: list[Record]) -> None:
        """Send and wait until the broker has acknowledged every record, or raise Refused(503)."""
        size = sum(len(r.value or b"") for r in records)
        if self.inflight + size > self.settings.collector_max_inflight:
            self.counts["busy"] += 1
            raise Refused(503, "busy", "the broker is not keeping up; retry later")
        assert self.producer is not None
        self.inflight += size
        try:
            futures = [await self.producer.send(r.topic, value=r.value, key=r.key,
                                                headers=r.headers or None) for r in records]
            await asyncio.wait_for(asyncio.gather(*futures),
                                   timeout=self.settings.collector_ack_timeout)
        except (KafkaError, TimeoutError) as exc:
            self.counts["broker_unavailable"] += 1
            log.warning("broker did not acknowledge %d events: %r", len(records), exc)
            raise Refused(503, "broker_unavailable",
                          "the events were not acknowledged by the broker; retry later") from None
        finally:
            self.inflight -= size

    async def handle(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        try:
            if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
                raise Refused(413, "request_too_large",
                              f"the body exceeds {MAX_REQUEST_BYTES} bytes")
            raw = await _read_body(request)
            header_key = write_key_of(request.headers.get("Authorization"), None)
            if header_key is not None and not self.authorized(header_key):
                raise Refused(401, "unauthorized", "unknown write key")
            body = read_body(raw, request.headers.get("Content-Encoding"))
            if header_key is None and not self.authorized(write_key_of(None, body)):
                raise Refused(401, "unauthorized", "a valid write key is required (HTTP Basic "
                              "username, empty password, or 'writeKey' in the body)")
            prepared = prepare(endpoint, body, datetime.now(timezone.utc),
                               self.settings.max_event_bytes)
            await self.publish(self.records_of(prepared))
        except Refused as exc:
            self.counts[f"refused_{exc.status}"] += 1
            headers = {"Retry-After": "1"} if exc.status == 503 else None
            if exc.status == 401:
                headers = {"WWW-Authenticate": 'Basic realm="funnel"'}
            return _json(exc.status, exc.body(), headers)
        except Exception:   # a bug of ours: say so; the SDKs retry a 5xx, nothing is lost
            log.exception("collector failed on a request to /v1/%s", endpoint)
            self.counts["errors"] += 1
            return _json(500, {"code": "internal_error", "message": "the collector failed; "
                               "retry later"})
        self.counts["requests"] += 1
        self.counts["events"] += len(prepared.records)
        self.counts["rejected"] += len(prepared.rejected)
        for r in prepared.rejected:
            self.counts[f"rejected_{r.code}"] += 1
        return _json(200, {"success": True, "events": len(prepared.records),
                           "rejected": len(prepared.rejected),
                           "errors": [r.body() for r in prepared.rejected]})


async def _read_body(request: web.Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise Refused(413, "request_too_large", f"the body exceeds {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def healthz(request: web.Request) -> web.Response:
    """The broker (a metadata round trip through the collector's producer) and, when the
    dashboard is served, the database and the worker group's lag. 503 if one is down."""
    from streams.web import dashboard
    from streams.clients import worker_lag

    collector = request.app[COLLECTOR]
    checks: dict[str, Any] = {}
    ok = True
    try:
        assert collector.producer is not None, "not started"
        await asyncio.wait_for(collector.producer.client.force_metadata_update(), 5)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001  (reported, not raised)
        checks["broker"], ok = f"error: {exc!r}", False
    if dashboard.POOL in request.app:
        try:
            await dashboard.database_ok(request.app)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["database"], ok = f"error: {exc}".strip(), False
    if ok:
        settings = collector.settings
        try:
            lags = await asyncio.get_running_loop().run_in_executor(None, worker_lag, settings)
            checks["lag"] = sum(lags.values())
        except Exception as exc:  # noqa: BLE001
            checks["lag"] = f"unknown: {exc}"
    checks["collector"] = dict(collector.counts)
    return _json(200 if ok else 503, {"status": "ok" if ok else "unavailable", **checks})


class CountsCollector:
    """The collector's counts (the same ones ``/healthz`` shows) as Prometheus counters."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts

    def collect(self):  # type: ignore[no-untyped-def]
        c = self.counts
        events = CounterMetricFamily("funnel_collector_events", "Events by outcome",
                                     labels=["outcome"])
        events.add_metric(["taken"], c["events"])
        events.add_metric(["rejected"], c["rejected"])
        rejected = CounterMetricFamily("funnel_collector_rejected", "Events rejected (dead-"
                                       "lettered), by reason", labels=["reason"])
        requests = CounterMetricFamily("funnel_collector_requests", "Requests by status",
                                       labels=["status"])
        requests.add_metric(["200"], c["requests"])
        for key, n in sorted(c.items()):
            if key.startswith("rejected_"):
                rejected.add_metric([key.removeprefix("rejected_")], n)
            elif key.startswith("refused_"):
                requests.add_metric([key.removeprefix("refused_")], n)
        yield from (events, rejected, requests)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: requests by status, events taken and rejected (by reason)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CountsCollector(request.app[COLLECTOR].counts))
    return web.Response(body=generate_latest(registry), content_type="text/plain")


async def _preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS)


def create_app(settings: Settings,
               extra: Callable[[web.Application], None] | None = None
               ) -> web.Application:
    """The HTTP app: the collector routes (and whatever ``extra`` adds)."""
    collector = Collector(settings)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES + 1)
    app[COLLECTOR] = collector

    async def lifecycle(app: web.Application):
        await collector.start()
        yield
        await collector.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/{endpoint}", collector.handle)
    app.router.add_route("OPTIONS", "/v1/{endpoint}", _preflight)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if extra is not None:
        extra(app)
    return app


def serve(settings: Settings, on_ready: Callable[[str], None] | None = None) -> None:
    """Run the HTTP server until stopped. Blocks. With FUNNEL_DATABASE_URL, the dashboard and
    ``/healthz`` are served too."""
    extra = None
    if settings.database_url is not None:
        from streams.web import dashboard

        def extra(app: web.Application) -> None:
            dashboard.install(app, settings)

    app = create_app(settings, extra)

    async def ready(app: web.Application) -> None:
        if on_ready is not None:
            on_ready(f"http://{settings.http_host}:{settings.http_port}")

    app.on_startup.append(ready)
    # auto_decompress off: gzip bodies are inflated by read_body, with a bound on their size
    web.run_app(app, host=settings.http_host, port=settings.http_port, print=None,
                handle_signals=True, access_log=None, auto_decompress=False)
