"""``funnel learn``: a candidate model learned from the outcomes in the history."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from funnel.config import ModelError, load_model
from streams.cli.common import console
from streams.cli.common import load_settings as _settings
from streams.cli.group import main
from streams.cli.model import history_from_topics, read_history


def _day(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a date (YYYY-MM-DD)") from None
    return day if day.tzinfo else day.replace(tzinfo=timezone.utc)


@main.command()
@click.option("--events", "events_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="History as JSON Lines (events and sales commands).")
@click.option("--from-topic", is_flag=True,
              help="Read the history from the events and sales-feedback topics instead.")
@click.option("--outcome", type=click.Choice(["won", "sql"]), default="won", show_default=True,
              help="won: won vs lost/rejected/disqualified among leads that reached SQL; "
                   "sql: reached SAL/SQL vs recycled/disqualified among MQLs.")
@click.option("--since", help="Only leads whose decision moment is on or after this day.")
@click.option("--until", help="Only leads whose decision moment is before this day.")
@click.option("--holdout", default=0.3, show_default=True, type=click.FloatRange(0.05, 0.6),
              help="Share of the newest labelled leads kept out of training, to judge on.")
@click.option("--precision", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="The MQL bar is the one keeping most positives at this precision.")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The current model (default: FUNNEL_MODEL or the packaged one).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the candidate model file.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the weights and the holdout figures as JSON.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the lift and calibration curves (PNG).")
def learn(events_file: Path | None, from_topic: bool, outcome: str, since: str | None,
          until: str | None, holdout: float, precision: float, baseline: Path | None, out: Path,
          json_out: Path | None, chart: Path | None) -> None:
    """Learn rule points from outcomes; write a candidate model and judge it against the
    current one on the newest outcomes."""
    from funnel.candidate import learn as learn_model
    from funnel.fitting import LearnError
    from streams.embedded.runner import collect_less

    if (events_file is None) == (not from_topic):
        raise click.UsageError("give exactly one of --events FILE or --from-topic")
    collect_less()   # replays of the whole history
    settings = _settings()
    try:
        current = load_model(baseline or settings.model)
    except ModelError as exc:
        raise click.ClickException(f"bad model file:\n{exc}") from None
    messages, _ = read_history(events_file) if events_file else history_from_topics(settings)
    try:
        learned = learn_model(messages, current, outcome, holdout=holdout,  # type: ignore[arg-type]
                              precision=precision, since=_day(since), until=_day(until))
    except LearnError as exc:
        raise click.ClickException(f"no model learned: {exc}") from None
    out.write_text(learned.text, "utf-8")
    if json_out is not None:
        json_out.write_text(json.dumps(learned.report, indent=2), "utf-8")
    if chart is not None:
        from streams.cli.learn_chart import draw

        draw(learned.holdout, chart)
    _print(learned.report, out)


def _print(r: dict, out: Path) -> None:
    from rich.table import Table

    console.print(f"{r['rows']} leads with a known '{r['outcome']}' outcome "
                  f"({r['period']['from'][:10]} .. {r['period']['to'][:10]}), "
                  f"{r['positives']} positive; trained on the older {r['train_rows']}, judged on "
                  f"the newest {r['holdout_rows']} (from {r['holdout_from'][:10]})")
    t = Table(title="holdout")
    for col in ("model", "AUC", "lift, top decile", "Brier"):
        t.add_column(col, justify="right" if col != "model" else "left")
    for name, h in r["holdout"].items():
        t.add_row(name, f"{h['auc']:.3f}", f"{h['lift_top_decile']:.2f}", f"{h['brier']:.3f}")
    console.print(t)
    w = Table(title=f"learned points ({r['points_per_doubling']:g} points double the odds)")
    for col in ("rule", "log-odds", "points", "current points", "rows fired"):
        w.add_column(col, justify="left" if col == "rule" else "right")
    for name, v in sorted(r["weights"].items(), key=lambda kv: -abs(kv[1]["log_odds"])):
        w.add_row(name, f"{v['log_odds']:+.3f}", f"{v['points']:g}", f"{v['current_points']:g}",
                  str(v["rows_fired"]))
    console.print(w)
    if r["unsupported"]:
        console.print("kept at their current points (the data cannot support a weight):")
        for name, why in r["unsupported"].items():
            console.print(f"  {name}: {why}")
    for group in r["tied"]:
        console.print(f"fired in exactly the same rows, one weight shared: {', '.join(group)}")
    b = r["mql_bar"]
    console.print(f"MQL bar: interest ≥ {b['min_interest']:g} and fit ≥ {b['min_fit']:g} "
                  f"(training precision {b['train_precision']:.2f}, recall "
                  f"{b['train_recall']:.2f}; target precision {b['target_precision']:g})")
    console.print(f"candidate written to {out}: check it with `funnel model check {out}`, "
                  f"compare with `funnel backtest --model {out} ...`")
