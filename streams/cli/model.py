"""The model at work: ``backtest``, ``explain`` and ``model check``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from funnel.config import ModelError, load_model
from streams.cli.common import console, err
from streams.cli.common import load_settings as _settings
from streams.cli.common import progress_bar as _progress
from streams.cli.group import main
from schemas.lead import STAGES
from streams.settings import Settings


def read_history(path: Path) -> tuple[list, int]:
    """Messages of a JSON Lines file (events and sales commands), with the count of bad lines."""
    from schemas.commands import parse_command
    from schemas.events import InvalidMessage, parse_event

    messages, bad = [], 0
    lines = path.read_bytes().splitlines()
    with _progress() as progress:
        task = progress.add_task(f"reading {path.name}", total=len(lines))
        for line in lines:
            progress.advance(task)
            if not line.strip():
                continue
            try:
                messages.append(parse_command(line) if b'"command_id"' in line
                                else parse_event(line))
            except InvalidMessage:
                bad += 1
    return messages, bad


@main.command()
@click.option("--model", "candidate", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The candidate model file.")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The current model (default: FUNNEL_MODEL or the packaged one).")
@click.option("--events", "events_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="History as JSON Lines (events and sales commands).")
@click.option("--from-topic", is_flag=True,
              help="Read the history from the events and sales-feedback topics instead.")
@click.option("--show", default=20, show_default=True, type=click.IntRange(0),
              help="How many changed leads to list.")
def backtest(candidate: Path, baseline: Path | None, events_file: Path | None, from_topic: bool,
             show: int) -> None:
    """Replay history through the current and a candidate model; compare the funnels."""
    from rich.table import Table

    from funnel.backtest import changes, replay
    from streams.embedded.runner import collect_less

    if (events_file is None) == (not from_topic):
        raise click.UsageError("give exactly one of --events FILE or --from-topic")
    collect_less()   # two replays of the whole history
    settings = _settings()
    current_path = baseline or settings.model
    try:
        current_model, candidate_model = load_model(current_path), load_model(candidate)
    except ModelError as exc:
        raise click.ClickException(f"bad model file:\n{exc}") from None
    if events_file is not None:
        messages, bad = read_history(events_file)
    else:
        messages, bad = history_from_topics(settings)
    results = []
    with _progress() as progress:
        for name, m in (("current", current_model), ("candidate", candidate_model)):
            task = progress.add_task(f"replaying with the {name} model", total=1)
            results.append(replay(messages, m))
            progress.advance(task)
    cur, cand = results
    t = Table(title=f"{len(messages)} messages, {len(cur.leads)} leads"
                    + (f", {bad} invalid lines skipped" if bad else ""))
    t.add_column("stage")
    t.add_column(f"current ({current_model.name} v{current_model.version})", justify="right")
    t.add_column(f"candidate ({candidate_model.name} v{candidate_model.version})",
                 justify="right")
    t.add_column("change", justify="right")
    for stage in STAGES:
        a, b = cur.stages()[stage], cand.stages()[stage]
        if a or b:
            t.add_row(stage, str(a), str(b), f"{b - a:+d}" if b != a else "")
    for stage in ("mql", "sql", "customer"):
        a, b = cur.handoffs[stage], cand.handoffs[stage]
        t.add_row(f"handoffs {stage}", str(a), str(b), f"{b - a:+d}" if b != a else "")
    console.print(t)
    moved = changes(cur, cand)
    console.print(f"{len(moved)} leads would end at a different stage")
    if moved and show:
        c = Table()
        for col in ("lead", "current", "candidate"):
            c.add_column(col)
        for ch in moved[:show]:
            c.add_row(ch.lead_id, ch.current, ch.candidate)
        console.print(c)


def history_from_topics(settings: Settings) -> tuple[list, int]:
    from schemas.commands import parse_command
    from schemas.events import InvalidMessage, parse_event
    from streams.clients import read_all

    if not settings.broker:
        raise click.UsageError("--from-topic needs FUNNEL_BROKER")
    messages, bad = [], 0
    for topic, parse in ((settings.topic("events"), parse_event),
                         (settings.topic("sales-feedback"), parse_command)):
        records = sorted(read_all(settings, topic, timeout=30), key=lambda r: (r.partition, r.offset))
        for r in records:
            try:
                messages.append(parse(r.value))
            except InvalidMessage:
                bad += 1
    return messages, bad


@main.command()
@click.argument("lead_id")
def explain(lead_id: str) -> None:
    """Why LEAD_ID has its scores, temperature, quality and stage (reads FUNNEL_DATABASE_URL)."""
    from streams.cli.explain import fetch, render

    settings = _settings()
    if settings.database_url is None:
        raise click.UsageError("funnel explain needs FUNNEL_DATABASE_URL (printed by 'funnel up')")
    import psycopg

    try:
        lead, history = fetch(settings, lead_id)
    except psycopg.Error as exc:
        raise click.ClickException(f"cannot read the leads table at FUNNEL_DATABASE_URL: "
                                   f"{str(exc).strip()}") from None
    if lead is None:
        raise click.ClickException(f"no lead '{lead_id}' in the leads table")
    render(console if console.is_terminal else Console(width=160), lead, history)


@main.group()
def model() -> None:
    """The scoring and lifecycle model file."""


@model.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def model_check(file: Path | None) -> None:
    """Validate a model FILE (default: FUNNEL_MODEL or the packaged model) without starting."""
    path = file or _settings().model
    try:
        m = load_model(path)
    except ModelError as exc:
        err.print(f"[red]{exc}[/red]", soft_wrap=True)
        sys.exit(1)
    console.print(f"ok: model '{m.name}' version {m.version}: {len(m.interest.rules)} interest "
                  f"rules, {len(m.fit.rules)} fit rules, policy {m.lifecycle.policy}")
