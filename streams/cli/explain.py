"""``funnel explain LEAD_ID``: why a lead has its scores and its stage, from the projection."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from streams.db.migrate import connect_kwargs
from streams.settings import Settings


def fetch(settings: Settings, lead_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    with psycopg.connect(settings.dsn(), row_factory=dict_row,
                         **connect_kwargs(settings.db_schema)) as conn:
        lead = conn.execute("SELECT * FROM leads WHERE lead_id = %s", (lead_id,)).fetchone()
        history = conn.execute("SELECT * FROM lead_transitions WHERE lead_id = %s ORDER BY version",
                               (lead_id,)).fetchall()
    return lead, history


def _at(v: Any) -> str:
    return "" if v is None else str(v)[:19].replace("T", " ")


def render(console: Console, lead: dict[str, Any], history: list[dict[str, Any]]) -> None:
    console.print(f"[bold]{lead['lead_id']}[/bold]  stage [bold]{lead['stage']}[/bold] since "
                  f"{_at(lead['stage_entered_at'])}, origin {lead['origin']}, model "
                  f"{lead['model_name']} v{lead['model_version']}, version {lead['version']}")
    console.print(f"interest {lead['interest_score']:.1f} → [bold]{lead['temperature']}[/bold] "
                  f"(as of {_at(lead['interest_at'])});  fit {lead['fit_score']:.1f} → "
                  f"[bold]{lead['quality']}[/bold]")
    t = Table(title="Interest: what the score is made of")
    for col in ("rule", "points", "when", "worth now"):
        t.add_column(col, justify="right" if col in ("points", "worth now") else "left")
    total = 0.0
    for r in lead["contributions"]:
        total += r.get("decayed") or 0.0
        t.add_row(r["rule"], f"{r['points']:g}", _at(r.get("at")), f"{r.get('decayed', 0):.2f}")
    t.add_row("[bold]total[/bold]", "", "", f"[bold]{total:.2f}[/bold]")
    console.print(t)
    f = Table(title="Fit: which traits counted")
    for col in ("rule", "points", "trait"):
        f.add_column(col)
    for r in lead["fit_reasons"]:
        f.add_row(r["rule"], f"{r['points']:g}", r.get("detail") or "")
    console.print(f)
    h = Table(title="Stage history")
    for col in ("version", "from", "to", "trigger", "when", "by", "why"):
        h.add_column(col)
    for row in history:
        why = row["reason"] or ", ".join(r["rule"] for r in row["reasons"][:3])
        h.add_row(str(row["version"]), row["from_stage"], row["to_stage"], row["trigger"],
                  _at(row["occurred_at"]), row["actor"] or "", why)
    console.print(h)
