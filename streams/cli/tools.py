"""The data tools of the ``funnel`` command: ``schema``, ``dlq``, ``costs``, ``report``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson
from rich.console import Console

from streams.cli.common import console, db_settings, err, load_settings, migrated
from streams.db.kpis import DIMENSIONS, GRAINS


@click.command()
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the schemas to (created if missing).")
def schema(out_dir: Path) -> None:
    """Write a JSON Schema for every message on every topic and an AsyncAPI 3.0 document."""
    import yaml

    from importlib.metadata import version

    from schemas.export import asyncapi, json_schemas

    settings = load_settings()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    written = []
    for name, doc in json_schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        written.append(path)
    server = settings.bootstrap_servers()[0] if settings.broker else "127.0.0.1:9092"
    doc = asyncapi(settings.topic_prefix, settings.partitions, version("funnel"), server)
    (out_dir / "asyncapi.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    (out_dir / "asyncapi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, width=100),
                                           "utf-8")
    console.print(f"wrote {len(written)} JSON Schemas and asyncapi.json/asyncapi.yaml "
                  f"(AsyncAPI 3.0, {len(doc['channels'])} topics) to {out_dir}")


@click.group(invoke_without_command=True)
@click.option("--reason", "reasons", multiple=True, help="Only dead letters with this error "
              "(repeat for several), e.g. invalid_event, command_refused.")
@click.option("--count", "count_only", is_flag=True, help="Count the dead letters by reason.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0),
              help="Show at most this many (the newest); 0: all.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@click.pass_context
def dlq(ctx: click.Context, reasons: tuple[str, ...], count_only: bool, limit: int,
        as_json: bool) -> None:
    """List the dead letters on the DLQ with their reasons (see also: funnel dlq replay)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    letters = _dead_letters(reasons)
    if count_only:
        from streams.cli.dlq import count_by_reason

        counts = count_by_reason(letters)
        if as_json:
            console.print_json(orjson.dumps(dict(counts)).decode())
            return
        t = Table(title=f"{len(letters)} dead letters by reason")
        t.add_column("error")
        t.add_column("count", justify="right")
        for reason, n in counts:
            t.add_row(reason, str(n))
        console.print(t)
        return
    shown = letters[-limit:] if limit else letters
    if as_json:
        for d in shown:
            click.echo(orjson.dumps({
                "dlq": d.where, "time": d.timestamp.isoformat(), "error": d.error,
                "detail": d.detail, "source_topic": d.source_topic,
                "source_partition": d.source_partition, "source_offset": d.source_offset,
                "key": d.key.decode("utf-8", "replace") if d.key else None,
                "value": (d.value or b"").decode("utf-8", "replace")}).decode())
        return
    t = Table(title=f"{len(letters)} dead letters" + (f", the last {len(shown)}"
                                                      if len(shown) < len(letters) else ""))
    for col in ("dlq", "time", "error", "detail", "source", "key", "value"):
        t.add_column(col, overflow="fold")
    for d in shown:
        value = (d.value or b"").decode("utf-8", "replace")
        t.add_row(d.where, d.timestamp.strftime("%Y-%m-%d %H:%M:%S"), d.error, d.detail[:120],
                  f"{d.source_topic}[{d.source_partition}]@{d.source_offset}",
                  (d.key or b"").decode("utf-8", "replace"),
                  value[:80] + ("…" if len(value) > 80 else ""))
    console.print(t)
    console.print("replay chosen ones with: funnel dlq replay --at PARTITION:OFFSET "
                  "(or --reason ERROR)")


def _dead_letters(reasons: tuple[str, ...]) -> list:
    from streams.cli.dlq import read_dead_letters

    settings = load_settings()
    if not settings.broker:
        raise click.UsageError("funnel dlq needs FUNNEL_BROKER (printed by 'funnel up')")
    letters = read_dead_letters(settings)
    return [d for d in letters if not reasons or d.error in reasons]


@dlq.command("replay")
@click.option("--at", "where", multiple=True, metavar="PARTITION:OFFSET",
              help="A dead letter to replay, as listed by 'funnel dlq' (repeat for several).")
@click.option("--reason", "reasons", multiple=True, help="Replay every dead letter with this error.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed, send nothing.")
def dlq_replay(where: tuple[str, ...], reasons: tuple[str, ...], dry_run: bool) -> None:
    """Re-publish chosen dead letters to the topic they came from (after a fix)."""
    from streams.cli.dlq import replay

    if not where and not reasons:
        raise click.UsageError("choose what to replay: --at PARTITION:OFFSET or --reason ERROR")
    for w in where:
        p, _, o = w.partition(":")
        if not (p.isdigit() and o.isdigit()):
            raise click.BadParameter(f"{w!r} is not PARTITION:OFFSET (e.g. 3:17)",
                                     param_hint="--at")
    every = {d.where: d for d in _dead_letters(())}
    missing = [w for w in where if w not in every]
    if missing:
        raise click.ClickException(f"no dead letter at {', '.join(missing)} on the DLQ")
    letters = [d for w, d in every.items() if w in where or d.error in reasons]
    if not letters:
        raise click.ClickException("no dead letter matches")
    if dry_run:
        for d in letters:
            console.print(f"would replay {d.where} ({d.error}) to {d.source_topic}")
        return
    try:
        n = replay(load_settings(), letters)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"replayed {n} dead letters to their source topics")


@click.group()
def costs() -> None:
    """Campaign spend, for cost per lead and per customer."""


@costs.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def costs_import(file: Path) -> None:
    """Import spend from a CSV FILE with columns campaign, period, amount, currency
    (period: 2026-11-20, 2026-W47 or 2026-11). Re-importing a row replaces it."""
    from schemas.costs import BadCosts, parse_costs
    from streams.db.kpis import import_costs

    settings = db_settings("funnel costs import")
    try:
        rows = parse_costs(file.read_text("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text ({exc.reason})") from None
    except BadCosts as exc:
        raise click.ClickException(f"{file}: nothing imported:\n" + "\n".join(
            f"  {p}" for p in exc.problems)) from None
    migrated(settings)
    n = import_costs(settings, rows)
    total: dict[str, float] = {}
    for r in rows:
        total[r.currency] = total.get(r.currency, 0.0) + float(r.amount)
    console.print(f"imported {n} spend rows from {file} ("
                  + ", ".join(f"{v:,.2f} {k}" for k, v in sorted(total.items())) + ")")


@click.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Day after the last (exclusive).")
@click.option("--grain", default="month", show_default=True,
              type=click.Choice(GRAINS), help="Period length.")
@click.option("--by", "by", default="all", show_default=True,
              type=click.Choice(DIMENSIONS),
              help="Split every period by this dimension.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv"]))
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the funnel as a PNG picture.")
def report(since, until, grain: str, by: str, fmt: str, chart: Path | None) -> None:
    """The shared Sales/Marketing KPIs from the SQL views: leads, conversion, close rate,
    revenue, sales cycle, time in stage, cost per lead and per customer."""
    import psycopg

    from streams.db.kpis import ReportQuery, funnel_chart, sections, summary

    if since and until and until <= since:
        raise click.BadParameter("must be after --since", param_hint="--until")
    settings = db_settings("funnel report")
    q = ReportQuery(grain=grain, by=by, since=since.date() if since else None,
                    until=until.date() if until else None)
    try:
        data = sections(settings, q)
    except psycopg.errors.UndefinedTable:
        raise click.ClickException("no KPI views in the database: start a worker once (it "
                                   "applies the migrations)") from None
    except psycopg.Error as exc:
        raise click.ClickException(f"PostgreSQL at FUNNEL_DATABASE_URL: {str(exc).strip()}") \
            from None
    rows = summary(data, by)
    if fmt == "json":
        click.echo(orjson.dumps({"grain": grain, "by": by, "since": q.since, "until": q.until,
                                 "summary": rows, **data}, option=orjson.OPT_INDENT_2).decode())
    elif fmt == "csv":
        import csv

        first = ["period", "value", "leads", "mqls", "sqls", "customers", "mql_rate", "sql_rate",
                 "customer_rate", "lead_to_customer_rate", "won", "lost", "close_rate",
                 "cycle_median_days", "cycle_p90_days"]
        columns = first + sorted({k for r in rows for k in r} - set(first))
        w = csv.DictWriter(sys.stdout, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    else:
        _report_tables(console if console.is_terminal else Console(width=170), data, rows,
                       grain, by)
    if chart is not None:
        span = f"{q.since or 'start'} to {q.until or 'now'}"
        funnel_chart(data, chart, f"Funnel{'' if by == 'all' else ' by ' + by}, {span}")
        err.print(f"funnel chart written to {chart}")


def _report_tables(console: Console, data: dict, rows: list[dict], grain: str, by: str) -> None:
    from rich.table import Table

    def pct(v):
        return "" if v is None else f"{v:.0%}"

    def num(v):
        return "" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"

    t = Table(title=f"Funnel and sales per {grain}" + ("" if by == "all" else f" by {by}"))
    cols = ["period", by if by != "all" else "", "leads", "MQL", "SQL", "customers", "lead→MQL",
            "MQL→SQL", "SQL→cust.", "won", "lost", "close rate", "cycle median d", "cycle p90 d"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("period", by) else "right")
    for r in rows:
        t.add_row(r["period"], "" if by == "all" else r["value"], num(r.get("leads")),
                  num(r.get("mqls")), num(r.get("sqls")), num(r.get("customers")),
                  pct(r.get("mql_rate")), pct(r.get("sql_rate")), pct(r.get("customer_rate")),
                  num(r.get("won")), num(r.get("lost")), pct(r.get("close_rate")),
                  num(r.get("cycle_median_days")), num(r.get("cycle_p90_days")))
    console.print(t)
    money = Table(title="Revenue (by order date) and spend")
    for c in ("period", by if by != "all" else "", "currency", "customers", "revenue", "spend",
              "cost/lead", "cost/customer"):
        money.add_column(c, justify="left" if c in ("period", by, "currency") else "right")
    currencies = sorted({k.split("_", 1)[1] for r in rows for k in r
                         if k.startswith(("revenue_", "spend_"))})
    for r in rows:
        for cur in currencies:
            if f"revenue_{cur}" in r or f"spend_{cur}" in r:
                money.add_row(r["period"], "" if by == "all" else r["value"], cur,
                              num(r.get("customers")), num(r.get(f"revenue_{cur}")),
                              num(r.get(f"spend_{cur}")), num(r.get(f"cost_per_lead_{cur}")),
                              num(r.get(f"cost_per_customer_{cur}")))
    console.print(money)
    stays = Table(title=f"Time in stage (hours) per {grain}")
    for c in ("period", by if by != "all" else "", "stage", "stays", "median", "p90", "mean"):
        stays.add_column(c, justify="left" if c in ("period", by, "stage") else "right")
    for r in data["time_in_stage"]:
        stays.add_row(r["period"], "" if by == "all" else r["value"], r["stage"],
                      num(r["stays"]), num(r["median_hours"]), num(r["p90_hours"]),
                      num(r["avg_hours"]))
    console.print(stays)
