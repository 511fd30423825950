"""Funnel's Prometheus counters, next to Faust's own (``faust.sensors.prometheus``), served by
the worker at ``/metrics`` on ``FUNNEL_WORKER_PORT``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    """One registry per worker app: Faust's sensor and these counters share it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("funnel_events", "Interaction events taken, by type", ["type"],
                              registry=r)
        self.commands = Counter("funnel_commands", "Sales commands taken, by action", ["action"],
                                registry=r)
        self.dead_letters = Counter("funnel_dead_letters", "Messages sent to the DLQ, by reason",
                                    ["reason"], registry=r)
        self.handoffs = Counter("funnel_handoffs", "Handoff CloudEvents sent, by stage",
                                ["stage"], registry=r)
        self.transitions = Counter("funnel_transitions", "Stage changes, by stage entered",
                                   ["stage"], registry=r)
        self.identity = Counter("funnel_identity", "Identity protocol steps: merge, forward, "
                                "link_refused", ["step"], registry=r)
        self.alerts = Counter("funnel_sla_alerts", "SLA breach alerts sent", registry=r)
        self.reread = Counter("funnel_partitions_reread", "Consumed partitions read again from "
                              "the first offset not taken (left behind with nothing taken)",
                              registry=r)
        self.projected = Counter("funnel_projection_rows", "Lead rows written to PostgreSQL",
                                 registry=r)
        self.projection_lag = Gauge("funnel_projection_lag_messages", "Snapshots on funnel.leads "
                                    "not yet written to PostgreSQL (this worker's partitions)",
                                    registry=r)
        self.projection_behind = 0   # the gauge's value, for the worker's /healthz
        self._series: dict[tuple[Counter, str], Counter] = {}
        self._counted: dict[tuple[Counter, str], int] = {}   # not yet published
        self.projection_lag_seconds = Gauge(
            "funnel_projection_lag_seconds", "Age of the last snapshot written to PostgreSQL "
            "when it was written (broker time)", registry=r)

    def inc(self, counter: Counter, label: str) -> None:
        """``counter.labels(label).inc()`` at the next ``publish``: this runs for every event,
        and a labelled series' ``inc`` takes a lock (``labels`` a lock and a key too)."""
        key = (counter, label)
        self._counted[key] = self._counted.get(key, 0) + 1

    def publish(self) -> None:
        """What ``inc`` counted since, added to the counters (once a batch, and before a
        scrape of ``/metrics``); each labelled series looked up once."""
        counted, self._counted = self._counted, {}
        for (counter, label), n in counted.items():
            series = self._series.get((counter, label))
            if series is None:
                series = self._series[(counter, label)] = counter.labels(label)
            series.inc(n)

    def set_projection_lag(self, behind: int) -> None:
        self.projection_behind = behind
        self.projection_lag.set(behind)
