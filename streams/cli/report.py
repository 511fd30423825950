"""The funnel summary printed by ``funnel demo``: read from the projection and the topics."""

from __future__ import annotations

import psycopg
from rich.console import Console
from rich.table import Table

from streams.topics import Topics
from streams.db.migrate import connect_kwargs
from schemas.lead import STAGES
from streams.settings import Settings
from streams.clients import end_offsets



def counts(settings: Settings, column: str) -> dict[str, int]:
    assert column in ("stage", "temperature", "quality", "origin")
    with psycopg.connect(settings.dsn(), **connect_kwargs(settings.db_schema)) as conn:
        rows = conn.execute(f"SELECT {column}, count(*) FROM leads WHERE merged_into IS NULL "
                            "GROUP BY 1").fetchall()
    return {r[0]: r[1] for r in rows}


def lifecycle_counts(settings: Settings) -> dict[str, int]:
    """Identity merges and service levels, from the projection."""
    with psycopg.connect(settings.dsn(), **connect_kwargs(settings.db_schema)) as conn:
        merged, breached = conn.execute(
            "SELECT count(*) FILTER (WHERE merged_into IS NOT NULL), "
            "count(*) FILTER (WHERE sla_breached_at IS NOT NULL) FROM leads").fetchone()
    return {"anonymous ids merged into known leads": merged, "SQLs past their SLA": breached}


def handoffs(settings: Settings) -> dict[str, int]:
    topics = Topics.from_settings(settings)
    out = {}
    for stage in ("mql", "sql", "customer"):
        name = topics.handoff(stage)
        out[stage] = sum(end_offsets(settings, [name]).values())
    out["alerts"] = sum(end_offsets(settings, [topics.alerts]).values())
    out["dead letters"] = sum(end_offsets(settings, [topics.dlq]).values())
    return out


def _table(title: str, data: dict[str, int], order: list[str] | None = None) -> Table:
    t = Table(title=title)
    t.add_column(title.split()[-1])
    t.add_column("leads", justify="right")
    keys = [k for k in (order or sorted(data)) if k in data]
    for k in keys:
        t.add_row(k, str(data[k]))
    return t


def kpi_table(settings: Settings) -> Table:
    """The shared KPIs of all time, from the SQL views (``funnel report`` has the rest)."""
    from streams.db.kpis import ReportQuery, sections, summary

    rows = summary(sections(settings, ReportQuery(grain="all")), "all")
    row = rows[0] if rows else {}
    t = Table(title="KPIs (all time; see funnel report)")
    t.add_column("KPI")
    t.add_column("value", justify="right")

    def pct(v: object) -> str:
        return "–" if v is None else f"{float(v):.0%}"  # type: ignore[arg-type]

    t.add_row("leads → MQL → SQL → customers", " → ".join(
        str(row.get(k, 0)) for k in ("leads", "mqls", "sqls", "customers")))
    t.add_row("conversion lead→MQL / MQL→SQL / SQL→customer", " / ".join(
        pct(row.get(k)) for k in ("mql_rate", "sql_rate", "customer_rate")))
    t.add_row("close rate (won ÷ won + lost)", pct(row.get("close_rate")))
    t.add_row("sales cycle median / p90 (days)",
              f"{row.get('cycle_median_days', '–')} / {row.get('cycle_p90_days', '–')}")
    for key in sorted(k for k in row if k.startswith(("revenue_", "cost_per_lead_"))):
        label = key.replace("_", " ", 1).replace("_", " ")
        t.add_row(label, f"{row[key]:,.2f}")
    return t


def print_summary(settings: Settings, console: Console, messages: int, elapsed: float) -> None:
    stages = counts(settings, "stage")
    console.print(_table("Leads per stage", stages, list(STAGES)))
    console.print(_table("Leads per temperature", counts(settings, "temperature"),
                         ["hot", "warm", "cold"]))
    console.print(_table("Leads per quality", counts(settings, "quality"),
                         ["high", "medium", "low"]))
    console.print(_table("Leads per origin", counts(settings, "origin"),
                         ["marketing", "sales", "referral"]))
    h = handoffs(settings)
    t = Table(title="Handoffs sent")
    t.add_column("topic")
    t.add_column("messages", justify="right")
    for k, v in h.items():
        t.add_row(k, str(v))
    console.print(t)
    for what, n in lifecycle_counts(settings).items():
        console.print(f"{what}: {n}")
    console.print(kpi_table(settings))
    console.print(f"{sum(stages.values())} leads; {messages} messages processed in {elapsed:.1f}s "
                  f"end to end: {messages / elapsed:,.0f} events/s")
