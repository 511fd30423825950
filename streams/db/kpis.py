"""The shared KPIs, read from the SQL views (``streams/db/migrations/004_kpis.sql``): campaign spend
in, reports out (rows, a merged summary per period, a funnel chart)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from schemas.costs import Spend
from schemas.lead import STAGES as STAGES_IN_ORDER
from streams.db.migrate import connect_kwargs
from streams.db.writer import UPSERT_SPEND, spend_row
from streams.settings import Settings

DIMENSIONS = ("all", "origin", "source", "campaign", "temperature", "quality")
GRAINS = ("day", "week", "month", "all")
SECTIONS = {   # report section -> view
    "funnel": "kpi_funnel", "sales": "kpi_sales", "revenue": "kpi_revenue",
    "time_in_stage": "kpi_time_in_stage", "costs": "kpi_costs",
}
FUNNEL_STEPS = ("leads", "mqls", "sqls", "customers")   # the cohort columns of kpi_funnel


def connect(settings: Settings) -> psycopg.Connection:
    return psycopg.connect(settings.dsn(), **connect_kwargs(settings.db_schema))


def import_costs(settings: Settings, rows: list[Spend], source: str = "csv") -> int:
    """Upsert spend rows (a re-import of the same campaign/period/currency replaces it)."""
    with connect(settings) as conn:
        with conn.cursor() as cur:
            cur.executemany(UPSERT_SPEND, [spend_row(r, source) for r in rows])
        conn.commit()
    return len(rows)


@dataclass(frozen=True)
class ReportQuery:
    grain: str = "month"
    by: str = "all"
    since: date | None = None
    until: date | None = None      # exclusive

    def where(self, dimension: str | None = None) -> tuple[str, list[Any]]:
        clauses, args = ["grain = %s", "dimension = %s"], [self.grain, dimension or self.by]
        if self.since is not None and self.grain != "all":
            clauses.append("period >= %s")
            args.append(self.since)
        if self.until is not None and self.grain != "all":
            clauses.append("period < %s")
            args.append(self.until)
        return " AND ".join(clauses), args


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, date):
        return v.isoformat()
    return v


def sections(settings: Settings, q: ReportQuery) -> dict[str, list[dict[str, Any]]]:
    """Each section: the rows of its view for the query, as plain JSON values."""
    out = {}
    with connect(settings) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        for name, view in SECTIONS.items():
            if view == "kpi_costs" and q.by not in ("all", "campaign"):
                out[name] = []   # spend is known per campaign only
                continue
            # spend is per campaign: all campaigns, summed for --by all
            where, args = q.where("campaign" if view == "kpi_costs" else None)
            rows = conn.execute(f"SELECT * FROM {view} WHERE {where} "  # noqa: S608
                                "ORDER BY 1, 2, 3, 4", args).fetchall()
            if view == "kpi_time_in_stage":   # stages in funnel order within a period/value
                rows.sort(key=lambda r: (r["period"], r["value"], STAGES_IN_ORDER.index(r["stage"])))
            out[name] = [{k: _plain(v) for k, v in r.items()} for r in rows]
    return out


def summary(data: dict[str, list[dict[str, Any]]], by: str = "all") -> list[dict[str, Any]]:
    """One row per (period, value): the funnel, sales, revenue per currency and spend."""
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in data["funnel"]:
        row = rows[(r["period"], r["value"])]
        row.update({k: r[k] for k in ("leads", "mqls", "sqls", "customers", "mql_rate",
                                      "sql_rate", "customer_rate", "lead_to_customer_rate")})
    for r in data["sales"]:
        row = rows[(r["period"], r["value"])]
        row.update({k: r[k] for k in ("won", "lost", "close_rate", "cycle_median_days",
                                      "cycle_p90_days")})
    for r in data["revenue"]:
        rows[(r["period"], r["value"])][f"revenue_{r['currency']}"] = r["revenue"]
    spend: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in data["costs"]:   # per campaign; summed over campaigns for --by all
        value = r["value"] if by == "campaign" else "(all)"
        spend[(r["period"], value)][r["currency"]] += r["spend"]
    for key, by_currency in spend.items():
        row = rows[key]
        for currency, amount in by_currency.items():
            row[f"spend_{currency}"] = round(amount, 2)
            if row.get("leads"):
                row[f"cost_per_lead_{currency}"] = round(amount / row["leads"], 2)
            if row.get("customers"):
                row[f"cost_per_customer_{currency}"] = round(amount / row["customers"], 2)
    return [{"period": p, "value": v, **rows[(p, v)]} for p, v in sorted(rows)]


def funnel_chart(data: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    """A funnel picture: leads → MQL → SQL → customers (totals of the report), with the
    conversion between stages; with several values (``--by``), one funnel per value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FUNNEL_STEPS, 0))
    for r in data["funnel"]:
        for s in FUNNEL_STEPS:
            totals[r["value"]][s] += r[s]
    values = sorted(totals) or ["(all)"]
    cols = min(len(values), 3)
    nrows = -(-len(values) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows + 0.6), squeeze=False)
    colors = ["#4c78a8", "#72b7b2", "#f58518", "#54a24b"]
    for ax in axes.flat[len(values):]:
        ax.set_visible(False)
    for ax, value in zip(axes.flat, values):
        counts = [totals[value][s] for s in FUNNEL_STEPS]
        top = max(counts[0], 1)
        for i, (stage, n) in enumerate(zip(FUNNEL_STEPS, counts)):
            y = len(FUNNEL_STEPS) - 1 - i
            ax.barh(y, n, left=(top - n) / 2, color=colors[i], height=0.8)
            rate = f"  ({n / counts[i - 1]:.0%})" if i and counts[i - 1] else ""
            ax.text(top / 2, y, f"{stage}: {n}{rate}", ha="center", va="center", fontsize=10,
                    color="black")
        ax.set_xlim(0, top)
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_title(value if len(values) > 1 else "funnel", fontsize=11)
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
