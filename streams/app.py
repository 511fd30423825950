"""The Faust app: topics, the lead-state table, and the two agents (pipeline, projection)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from funnel.config import ScoringModel
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger("funnel.app")


@dataclass
class Topics:
    events: str
    feedback: str
    handoff_mql: str
    handoff_sql: str
    handoff_customer: str
    transitions: str
    leads: str
    dlq: str
    alerts: str
    identity: str
    costs: str

    @classmethod
    def from_settings(cls, s: Settings) -> "Topics":
        return cls(events=s.topic("events"), feedback=s.topic("sales-feedback"),
                   handoff_mql=s.topic("handoff.mql"), handoff_sql=s.topic("handoff.sql"),
                   handoff_customer=s.topic("handoff.customer"),
                   transitions=s.topic("transitions"), leads=s.topic("leads"),
                   dlq=s.topic("events.dlq"), alerts=s.topic("alerts"),
                   identity=s.topic("identity"), costs=s.topic("costs"))

    def handoff(self, stage: str) -> str:
        return {"mql": self.handoff_mql, "sql": self.handoff_sql,
                "customer": self.handoff_customer}[stage]

    def consumed(self) -> list[str]:
        """The topics the worker group reads (its lag is the pipeline's lag)."""
        return [self.events, self.feedback, self.identity, self.leads, self.costs]

    def all(self) -> list[str]:
        return [self.events, self.feedback, self.handoff_mql, self.handoff_sql,
                self.handoff_customer, self.transitions, self.leads, self.dlq, self.alerts,
                self.identity, self.costs]


def _seek_before_resume() -> None:
    """Work around two start-up hazards of faust-streaming (0.15) with aiokafka.

    A stream partition with no committed offset (or offset 0: aiokafka does not seek to 0) is
    started by the reset policy; on Tansu 0.6 that put a restarted worker at the *end* of the
    identity partitions, whose first offsets had not been committed yet, and every link and
    absorb message before it was skipped (the crash test caught it). Such partitions are sought
    to offset 0 explicitly. And recovery resumes the stream partitions before it seeks them; they
    are kept paused until the seek is done, so that nothing is fetched from the old position."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer.perform_seek, "_funnel", False):
        return
    original = Consumer.perform_seek

    async def perform_seek(self: Consumer) -> None:
        streams = {tp for tp in self.assignment() if not self._is_changelog_tp(tp)}
        self.pause_partitions(streams)
        try:
            await original(self)
            for tp in streams:
                if not self._read_offset.get(tp):   # None or 0: from the beginning
                    await self.seek(tp, 0)
        finally:
            self.resume_partitions(streams)

    perform_seek._funnel = True  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def create_app(settings: Settings, model: ScoringModel, *, projection: bool = True) -> faust.App:
    """Build the worker app. Faust's own env vars (BROKER_URL, …) are not used for our settings."""
    from streams import agents

    _seek_before_resume()
    assert settings.broker, "FUNNEL_BROKER must be set for a worker"
    datadir = (settings.data_dir / "worker" / settings.app_id).resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=settings.worker_port > 0,
        web_port=settings.worker_port or 6066,
        web_bind=settings.http_host,
        web_host=settings.http_host,
        autodiscover=False,
        producer_acks=-1,
    )
    metrics = Metrics()
    if settings.worker_port > 0:
        _web(app, settings, metrics)
    agents.install(app, settings, model, Topics.from_settings(settings), projection=projection,
                   metrics=metrics)
    return app


def _web(app: faust.App, settings: Settings, metrics: Metrics) -> None:
    """``/metrics`` (Faust's Prometheus sensor and Funnel's counters) and ``/healthz``."""
    import psycopg
    from faust.sensors.prometheus import setup_prometheus_sensors

    from streams.agents import seeked

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
        ok = ok and bool(assigned) and seeked(app)
        return self.json({"status": "ok" if ok else "unavailable", **checks},
                         status=200 if ok else 503)
