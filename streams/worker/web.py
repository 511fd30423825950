"""The worker's HTTP pages on ``FUNNEL_WORKER_PORT``: ``/metrics`` (Faust's Prometheus sensor
and Funnel's counters in one registry) and ``/healthz``."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import PrometheusMonitor

from streams.settings import Settings
from streams.worker.faust_glue import seeked
from streams.worker.metrics import Metrics
from streams.worker.positions import Positions
from streams.worker.progress import Progress


PROJECTION_PREFIX = "funnel_projection"   # the projection's metric families (both processes)


def install(app: faust.App, settings: Settings, metrics: Metrics, progress: Progress,
            positions: Positions, consumed: set[str], *, sensor_prefix: str = "funnel_faust",
            projection_url: str | None = None) -> None:
    """``/metrics`` (Faust's Prometheus sensor and Funnel's counters) and ``/healthz``: 503
    while the database is down, nothing is assigned or recovered yet, or a consumed partition
    is stalled (behind its end with nothing taken for ``FUNNEL_STALL_SECONDS``).

    ``projection_url``: the projection runs in a child process serving its own pages there; its
    metric families (``funnel_projection*``) are served here in place of this process's, and
    its ``/healthz`` is part of this one (so one port tells about the whole worker)."""
    import aiohttp
    from faust.sensors.prometheus import setup_prometheus_sensors
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    setup_prometheus_sensors(app, pattern="/metrics/process", registry=metrics.registry,
                             name_prefix=sensor_prefix)
    app.monitor = lean_monitor(app.monitor)

    async def child(path: str) -> tuple[int, bytes]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            async with session.get(f"{projection_url}{path}") as response:
                return response.status, await response.read()

    @app.page("/metrics")
    async def metrics_page(self, request):  # type: ignore[no-untyped-def]
        metrics.publish()   # what the batch being decided has counted so far
        own = generate_latest(metrics.registry).decode()
        if projection_url is not None:
            try:
                text = (await child("/metrics"))[1].decode()
            except Exception as exc:  # noqa: BLE001  (reported, not raised)
                text = f"# the projection process did not answer: {exc!r}\n"
            own = merge_metrics(own, text)
        return self.bytes(own.encode(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(self, request):  # type: ignore[no-untyped-def]
        ok, checks = await own_health(app, settings, metrics, progress, positions, consumed)
        if projection_url is not None:
            try:
                status, body = await child("/healthz")
                answer = orjson.loads(body)
                checks["projection"] = answer
                checks["projection_lag_messages"] = answer.get("projection_lag_messages")
                ok = ok and status == 200
            except Exception as exc:  # noqa: BLE001
                checks["projection"], ok = f"the projection process did not answer: {exc!r}", False
        return self.json({"status": "ok" if ok else "unavailable", **checks},
                         status=200 if ok else 503)


async def own_health(app: faust.App, settings: Settings, metrics: Metrics, progress: Progress,
                     positions: Positions, consumed: set[str]) -> tuple[bool, dict[str, object]]:
    """This process's checks: the database, the assignment, recovery, stalled partitions."""
    import psycopg

    checks: dict[str, object] = {}
    ok = True
    try:
        async with await psycopg.AsyncConnection.connect(settings.dsn(), connect_timeout=3) as conn:
            await conn.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001  (reported, not raised)
        checks["database"], ok = f"error: {exc}".strip(), False
    assigned = app.consumer.assignment() if app.consumer else set()
    checks["broker"] = "ok" if assigned else "no partitions assigned yet"
    checks["recovered"] = seeked(app)
    checks["assigned_partitions"] = len(assigned)
    checks["projection_lag_messages"] = metrics.projection_behind
    ends = {(tp.topic, tp.partition): app.consumer.highwater(tp)
            for tp in assigned if tp.topic in consumed}
    stalled = progress.stalled(ends, positions.expected) if seeked(app) else []
    checks["stalled_partitions"] = stalled
    return ok and bool(assigned) and seeked(app) and not stalled, checks


def merge_metrics(own: str, projection: str) -> str:
    """This process's metrics with the projection's families (``funnel_projection*``) taken
    from the projection process's text instead (Prometheus text format: a family's ``# HELP``,
    ``# TYPE`` and samples all start with its name)."""
    def name(line: str) -> str:
        return line.split(" ", 3)[2] if line.startswith(("# HELP ", "# TYPE ")) else line

    kept = [line for line in own.splitlines() if not name(line).startswith(PROJECTION_PREFIX)]
    theirs = [line for line in projection.splitlines()
              if name(line).startswith(PROJECTION_PREFIX)]
    return "\n".join(kept + theirs) + "\n"


def lean_monitor(monitor: Any) -> Any:
    """``monitor`` (Faust's Prometheus sensor) as a ``LeanPrometheusMonitor`` of its metrics."""
    return LeanPrometheusMonitor(metrics=monitor._metrics)


class LeanPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor, the same metrics, with each labelled series looked up once.
    Its per-message hooks looked up their series by label every time (``labels()``) and made
    the stream's label again for every event: ~6% of the pipeline's time."""

    def __init__(self, metrics: Any) -> None:
        super().__init__(metrics=metrics)
        self.series: dict[Any, Any] = {}

    def _series(self, key: Any, make: Any) -> Any:
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = make()
        return found

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        Monitor.on_message_in(self, tp, offset, message)
        m = self._metrics
        m.messages_received.inc()
        m.active_messages.inc()
        self._series(("topic", tp.topic), lambda: m.messages_received_per_topics.labels(
            topic=tp.topic)).inc()
        self._series(("tp", tp), lambda: m.messages_received_per_topics_partition.labels(
            topic=tp.topic, partition=tp.partition)).set(offset)

    def messages_in(self, messages: list) -> None:
        """``on_message_in`` of each of ``messages`` (taken through an inbox), the counts
        added once a batch: the same figures, without four counter updates (each under a
        lock) and a clock read per message."""
        now, counts, last = self.time(), {}, {}
        for message in messages:
            message.time_in = now
            tp = message.tp
            counts[tp] = counts.get(tp, 0) + 1
            last[tp] = message.offset
        n, m = len(messages), self._metrics
        self.messages_received_total += n
        self.messages_active += n
        m.messages_received.inc(n)
        m.active_messages.inc(n)
        for tp, count in counts.items():
            self.messages_received_by_topic[tp.topic] += count
            self.tp_read_offsets[tp] = last[tp]
            self._series(("topic", tp.topic), lambda tp=tp: m.messages_received_per_topics
                         .labels(topic=tp.topic)).inc(count)
            self._series(("tp", tp), lambda tp=tp: m.messages_received_per_topics_partition
                         .labels(topic=tp.topic, partition=tp.partition)).set(last[tp])

    def messages_out(self, messages: list) -> None:
        """``on_message_out`` of each of ``messages`` (acknowledged through an inbox), the
        count taken off once a batch."""
        now = self.time()
        for message in messages:
            message.time_out = now
            if message.time_in is not None:
                message.time_total = now - message.time_in
        self.messages_active -= len(messages)
        self._metrics.active_messages.dec(len(messages))

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
        m = self._metrics
        m.total_events.inc()
        m.total_active_events.inc()
        self._stream_events(stream).inc()
        return state

    def _stream_events(self, stream: Any) -> Any:
        return self._series(("stream", stream), lambda: self._metrics.total_events_per_stream
                            .labels(stream=f"stream.{self._stream_label(stream)}.events"))

    def events_taken(self, stream: Any, n: int) -> None:
        """``n`` events of ``stream`` taken through an inbox (``worker.faust_inbox``): the
        stream's own sensor does not see them."""
        self._metrics.total_events.inc(n)
        self._stream_events(stream).inc(n)

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:   # at every message too
        Monitor.track_tp_end_offset(self, tp, offset)
        self._series(("end", tp), lambda: self._metrics.topic_partition_end_offset.labels(
            topic=tp.topic, partition=tp.partition)).set(offset)
