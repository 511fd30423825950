"""The names of Funnel's topics (with the prefix from the settings). Plain data: the worker, the
collector and the operator tools all use it, and none of them needs Faust for it."""

from __future__ import annotations

from dataclasses import dataclass

from streams.settings import Settings

HANDOFF_STAGES = ("mql", "sql", "customer")


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

    def inputs(self) -> list[str]:
        """The pipeline's inputs (the worker group's topics)."""
        return [self.events, self.feedback, self.identity]

    def projected(self) -> list[str]:
        """What the projection writes into PostgreSQL (``Settings.projection_group``)."""
        return [self.leads, self.costs]

    def group_of(self, s: Settings) -> dict[str, str]:
        """Each topic the worker reads, with the consumer group that reads it."""
        return {t: s.app_id for t in self.inputs()} | {t: s.projection_group
                                                       for t in self.projected()}

    def all(self) -> list[str]:
        return [self.events, self.feedback, self.handoff_mql, self.handoff_sql,
                self.handoff_customer, self.transitions, self.leads, self.dlq, self.alerts,
                self.identity, self.costs]
