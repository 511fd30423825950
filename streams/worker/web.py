"""The worker's HTTP pages on ``FUNNEL_WORKER_PORT``: ``/metrics`` (Faust's Prometheus sensor
and Funnel's counters in one registry) and ``/healthz``."""

from __future__ import annotations

import faust

from streams.settings import Settings
from streams.worker.faust_glue import seeked
from streams.topics import Topics
from streams.worker.metrics import Metrics
from streams.worker.positions import Positions
from streams.worker.progress import Progress


def install(app: faust.App, settings: Settings, metrics: Metrics, progress: Progress,
            positions: Positions, topics: Topics) -> None:
    """``/metrics`` (Faust's Prometheus sensor and Funnel's counters) and ``/healthz``: 503
    while the database is down, nothing is assigned or recovered yet, or a consumed partition
    is stalled (behind its end with nothing taken for ``FUNNEL_STALL_SECONDS``)."""
    import psycopg
    from faust.sensors.prometheus import setup_prometheus_sensors

    setup_prometheus_sensors(app, registry=metrics.registry, name_prefix="funnel_faust")

    @app.page("/healthz")
    async def healthz(self, request):  # type: ignore[no-untyped-def]
        checks: dict[str, object] = {}
        ok = True
        try:
            async with await psycopg.AsyncConnection.connect(settings.dsn(),
                                                             connect_timeout=3) as conn:
                await conn.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001  (reported, not raised)
            checks["database"], ok = f"error: {exc}".strip(), False
        assigned = app.consumer.assignment() if app.consumer else set()
        checks["broker"] = "ok" if assigned else "no partitions assigned yet"
        checks["recovered"] = seeked(app)
        checks["assigned_partitions"] = len(assigned)
        checks["projection_lag_messages"] = metrics.projection_behind
        consumed = set(topics.consumed())
        ends = {(tp.topic, tp.partition): app.consumer.highwater(tp)
                for tp in assigned if tp.topic in consumed}
        stalled = progress.stalled(ends, positions.expected) if seeked(app) else []
        checks["stalled_partitions"] = stalled
        ok = ok and bool(assigned) and seeked(app) and not stalled
        return self.json({"status": "ok" if ok else "unavailable", **checks},
                         status=200 if ok else 503)
