"""The Faust app: topics, the lead-state table, and the two agents (pipeline, projection)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from funnel.config import ScoringModel
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

    @classmethod
    def from_settings(cls, s: Settings) -> "Topics":
        return cls(events=s.topic("events"), feedback=s.topic("sales-feedback"),
                   handoff_mql=s.topic("handoff.mql"), handoff_sql=s.topic("handoff.sql"),
                   handoff_customer=s.topic("handoff.customer"),
                   transitions=s.topic("transitions"), leads=s.topic("leads"),
                   dlq=s.topic("events.dlq"))

    def handoff(self, stage: str) -> str:
        return {"mql": self.handoff_mql, "sql": self.handoff_sql,
                "customer": self.handoff_customer}[stage]

    def all(self) -> list[str]:
        return [self.events, self.feedback, self.handoff_mql, self.handoff_sql,
                self.handoff_customer, self.transitions, self.leads, self.dlq]


def create_app(settings: Settings, model: ScoringModel, *, projection: bool = True) -> faust.App:
    """Build the worker app. Faust's own env vars (BROKER_URL, …) are not used for our settings."""
    from streams import agents

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
        web_enabled=False,
        autodiscover=False,
        producer_acks=-1,
    )
    agents.install(app, settings, model, Topics.from_settings(settings), projection=projection)
    return app
