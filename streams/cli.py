"""The ``funnel`` command (click, the same library as Faust's own CLI)."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import click
import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from funnel.config import ModelError, load_model
from streams.settings import Settings

console = Console(stderr=False)
err = Console(stderr=True)


def _settings(**overrides: object) -> Settings:
    try:
        s = Settings()
    except ValidationError as exc:
        lines = [f"  FUNNEL_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        raise click.UsageError("invalid settings:\n" + "\n".join(lines)) from None
    return s.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def _model(settings: Settings):
    try:
        return load_model(settings.model)
    except ModelError as exc:
        raise click.ClickException(f"bad model file:\n{exc}") from None


def _sigterm_is_ctrl_c() -> None:
    """So that a SIGTERM (from a supervisor, or ``timeout``) also stops the stack cleanly."""
    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, raise_interrupt)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool) -> None:
    """Funnel: streaming lead scoring and lifecycle (IQL -> MQL -> SQL -> Customer)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


@main.command()
@click.option("--loglevel", default=None, type=click.Choice(["debug", "info", "warning", "error"]),
              help="Default: FUNNEL_LOG_LEVEL, else warning.")
def worker(loglevel: str | None) -> None:
    """Run the pipeline worker and the projection against FUNNEL_BROKER and FUNNEL_DATABASE_URL.

    Start several to scale out: they share the partitions of one consumer group."""
    from streams.runner import run_worker

    settings = _settings()
    if not settings.broker or settings.database_url is None:
        raise click.UsageError("funnel worker needs FUNNEL_BROKER and FUNNEL_DATABASE_URL "
                               "(or run 'funnel up' to start the embedded stack)")
    model = _model(settings)
    import psycopg

    try:
        run_worker(settings, model, loglevel or settings.log_level)
    except psycopg.Error as exc:
        raise click.ClickException(f"PostgreSQL at FUNNEL_DATABASE_URL: {str(exc).strip()}") \
            from None


@main.command()
def up() -> None:
    """Start the stack (embedded broker/PostgreSQL where unset), the worker, the projection and
    the HTTP collector and dashboard, until Ctrl-C."""
    from streams.runner import spawn_collector, spawn_worker, stack, stop_worker

    settings = _settings()
    _model(settings)
    _sigterm_is_ctrl_c()
    with stack(settings, echo=console.print) as s:
        s.data_dir.mkdir(parents=True, exist_ok=True)
        procs = [spawn_worker(s)]
        try:
            procs.append(_start_http(s, spawn_collector))
            console.print(f"worker started (pid {procs[0].pid}); topics prefixed "
                          f"'{s.topic_prefix}'. Ctrl-C to stop.")
            console.print(f"  export FUNNEL_BROKER={s.broker} FUNNEL_DATABASE_URL={s.dsn()}")
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
            dead = next(p for p in procs if p.poll() is not None)
            raise click.ClickException(f"a child process exited with code {dead.returncode}: "
                                       f"{' '.join(map(str, dead.args[-1:]))}")
        except KeyboardInterrupt:
            console.print("stopping…")
        finally:
            for p in reversed(procs):
                stop_worker(p)


def _start_http(s: Settings, spawn_collector):
    """The collector/dashboard child process; prints where it is and the write key."""
    try:
        proc = spawn_collector(s, s.data_dir / "collector.log")
    except (RuntimeError, TimeoutError) as exc:
        raise click.ClickException(
            f"the HTTP collector did not start on {s.http_host}:{s.http_port} ({exc}); is the "
            f"port taken? set FUNNEL_HTTP_PORT (log: {s.data_dir / 'collector.log'})") from None
    base = f"http://{s.http_host}:{s.http_port}"
    console.print(f"collector (Segment HTTP API) at {base}/v1/batch   write key: "
                  f"{s.write_key_list()[0]}")
    console.print(f"dashboard at {base}/   health {base}/healthz")
    if s.worker_port:
        console.print(f"worker metrics at http://{s.http_host}:{s.worker_port}/metrics")
    return proc


@main.command()
def collector() -> None:
    """Run the HTTP collector (Segment HTTP Tracking API) and the dashboard against
    FUNNEL_BROKER (and FUNNEL_DATABASE_URL for the dashboard), on FUNNEL_HTTP_HOST:PORT."""
    from streams.collector import serve
    from streams.topics import ensure_topics

    settings = _settings()
    if not settings.broker:
        raise click.UsageError("funnel collector needs FUNNEL_BROKER (or run 'funnel up')")
    keys = settings.write_key_list()
    try:
        ensure_topics(settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        serve(settings, on_ready=lambda url: console.print(
            f"collector listening at {url}/v1/batch ({len(keys)} write key(s))"))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {settings.http_host}:{settings.http_port}: "
                                   f"{exc.strerror or exc}") from None


def _event_key(msg: dict) -> str | None:
    key = msg.get("userId") or msg.get("anonymousId")
    return str(key) if key not in (None, "") else None


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", default="events", show_default=True,
              help="Topic name without the prefix (events or sales-feedback).")
def publish(file: Path, topic: str) -> None:
    """Publish messages from a JSON Lines FILE (one message per line) to the events topic."""
    from streams.topics import ensure_topics, producer

    settings = _settings()
    if not settings.broker:
        raise click.UsageError("funnel publish needs FUNNEL_BROKER (see 'funnel up')")
    ensure_topics(settings)
    name = settings.topic(topic)
    lines = file.read_bytes().splitlines()
    bad = 0
    p = producer(settings)
    with _progress() as progress:
        task = progress.add_task(f"publishing to {name}", total=len(lines))
        for n, line in enumerate(lines, 1):
            progress.advance(task)
            if not line.strip():
                continue
            try:
                msg = orjson.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                err.print(f"[red]{file}:{n}: skipped: {exc}[/red]")
                bad += 1
                continue
            key = msg.get("lead_id") if topic == "sales-feedback" else _event_key(msg)
            p.send(name, key=str(key).encode() if key else None, value=line)
    p.flush()
    p.close()
    console.print(f"published {len(lines) - bad} messages to {name}; {bad} bad lines skipped")


def _publish_traffic(settings: Settings, leads: int, days: int, seed: int,
                     wait=None) -> tuple[int, int]:
    from streams.simulate import generate
    from streams.topics import ensure_topics, producer

    ensure_topics(settings)
    traffic = generate(leads, days, seed)
    events_topic, feedback_topic = settings.topic("events"), settings.topic("sales-feedback")
    p = producer(settings)
    total = len(traffic.events) + len(traffic.malformed) + len(traffic.commands)
    with _progress() as progress:
        task = progress.add_task(f"simulating {leads} leads over {days} days", total=total)
        for key, msg in traffic.events:
            p.send(events_topic, key=key.encode(), value=orjson.dumps(msg))
            progress.advance(task)
        for key, raw in traffic.malformed:
            p.send(events_topic, key=key.encode() if key else None, value=raw)
            progress.advance(task)
        p.flush()
        if wait is not None:
            progress.update(task, description="waiting for the pipeline before sales feedback")
            wait()
            progress.update(task, description=f"simulating {leads} leads over {days} days")
        for key, cmd in traffic.commands:
            p.send(feedback_topic, key=key.encode(), value=orjson.dumps(cmd))
            progress.advance(task)
        p.flush()
    p.close()
    return len(traffic.events) + len(traffic.malformed), len(traffic.commands)


@main.command()
@click.option("--leads", default=500, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the traffic to this JSON Lines file instead of publishing it.")
def simulate(leads: int, days: int, seed: int, out: Path | None) -> None:
    """Publish realistic synthetic traffic to FUNNEL_BROKER: events first, then sales feedback."""
    from streams.runner import wait_caught_up

    if out is not None:
        from streams.simulate import generate

        traffic = generate(leads, days, seed)
        with out.open("wb") as f:
            for _, msg in traffic.events:
                f.write(orjson.dumps(msg) + b"\n")
            for _, raw in traffic.malformed:
                f.write(raw + b"\n")
            for _, cmd in traffic.commands:
                f.write(orjson.dumps(cmd) + b"\n")
        console.print(f"wrote {len(traffic.events)} events, {len(traffic.malformed)} malformed "
                      f"lines and {len(traffic.commands)} sales commands to {out}")
        return
    settings = _settings()
    if not settings.broker:
        raise click.UsageError("funnel simulate needs FUNNEL_BROKER (see 'funnel up')")
    events, commands = _publish_traffic(
        settings, leads, days, seed, wait=lambda: wait_caught_up(settings, timeout=120))
    console.print(f"published {events} events and {commands} sales commands")


@main.command()
@click.option("--leads", default=400, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--serve", is_flag=True, help="Keep the stack running after the summary.")
def demo(leads: int, days: int, seed: int, serve: bool) -> None:
    """`up` + `simulate`: wait for the pipeline to catch up, print a funnel summary, exit 0."""
    from streams.report import print_summary
    from streams.runner import (spawn_collector, spawn_worker, stack, stop_worker,
                                wait_caught_up)

    settings = _settings()
    _model(settings)
    _sigterm_is_ctrl_c()
    with stack(settings, echo=console.print) as s:
        s.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = s.data_dir / "worker.log"
        proc = spawn_worker(s, log_path)
        http = _start_http(s, spawn_collector) if serve else None
        console.print(f"worker started (pid {proc.pid}, log {log_path})")
        try:
            started = time.monotonic()

            def wait() -> None:
                if not wait_caught_up(s, timeout=600, proc=proc):
                    raise click.ClickException("the pipeline did not catch up in 10 minutes")

            events, commands = _publish_traffic(s, leads, days, seed, wait=wait)
            wait()
            elapsed = time.monotonic() - started
            print_summary(s, console, events + commands, elapsed)
            if serve:
                console.print(f"serving; open the dashboard at http://{s.http_host}:"
                              f"{s.http_port}/ — Ctrl-C to stop")
                while proc.poll() is None:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping…")
        finally:
            if http is not None:
                stop_worker(http)
            stop_worker(proc)


def _read_history(path: Path) -> tuple[list, int]:
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

    if (events_file is None) == (not from_topic):
        raise click.UsageError("give exactly one of --events FILE or --from-topic")
    settings = _settings()
    current_path = baseline or settings.model
    try:
        current_model, candidate_model = load_model(current_path), load_model(candidate)
    except ModelError as exc:
        raise click.ClickException(f"bad model file:\n{exc}") from None
    if events_file is not None:
        messages, bad = _read_history(events_file)
    else:
        messages, bad = _history_from_topics(settings)
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
    for stage in ["iql", "mql", "sal", "sql", "customer", "recycled", "disqualified"]:
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


def _history_from_topics(settings: Settings) -> tuple[list, int]:
    from schemas.commands import parse_command
    from schemas.events import InvalidMessage, parse_event
    from streams.topics import read_all

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
    from streams.explain import fetch, render

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


@main.command()
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the schemas to (created if missing).")
def schema(out_dir: Path) -> None:
    """Write a JSON Schema for every message on every topic and an AsyncAPI 3.0 document."""
    import yaml

    from importlib.metadata import version

    from schemas.export import asyncapi, json_schemas

    settings = _settings()
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


@main.group(invoke_without_command=True)
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
        from streams.dlq import count_by_reason

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
    from streams.dlq import read_dead_letters

    settings = _settings()
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
    from streams.dlq import replay

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
        n = replay(_settings(), letters)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"replayed {n} dead letters to their source topics")


def _db_settings(what: str) -> Settings:
    settings = _settings()
    if settings.database_url is None:
        raise click.UsageError(f"{what} needs FUNNEL_DATABASE_URL (printed by 'funnel up')")
    return settings


def _migrated(settings: Settings) -> None:
    import psycopg

    from streams.projection import migrate

    try:
        migrate(settings.dsn(), settings.db_schema)
    except psycopg.Error as exc:
        raise click.ClickException(f"PostgreSQL at FUNNEL_DATABASE_URL: {str(exc).strip()}") \
            from None


@main.group()
def costs() -> None:
    """Campaign spend, for cost per lead and per customer."""


@costs.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def costs_import(file: Path) -> None:
    """Import spend from a CSV FILE with columns campaign, period, amount, currency
    (period: 2026-11-20, 2026-W47 or 2026-11). Re-importing a row replaces it."""
    from schemas.costs import BadCosts, parse_costs
    from streams.kpis import import_costs

    settings = _db_settings("funnel costs import")
    try:
        rows = parse_costs(file.read_text("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text ({exc.reason})") from None
    except BadCosts as exc:
        raise click.ClickException(f"{file}: nothing imported:\n" + "\n".join(
            f"  {p}" for p in exc.problems)) from None
    _migrated(settings)
    n = import_costs(settings, rows)
    total: dict[str, float] = {}
    for r in rows:
        total[r.currency] = total.get(r.currency, 0.0) + float(r.amount)
    console.print(f"imported {n} spend rows from {file} ("
                  + ", ".join(f"{v:,.2f} {k}" for k, v in sorted(total.items())) + ")")


@main.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Day after the last (exclusive).")
@click.option("--grain", default="month", show_default=True,
              type=click.Choice(["day", "week", "month", "all"]), help="Period length.")
@click.option("--by", "by", default="all", show_default=True,
              type=click.Choice(["all", "origin", "source", "campaign", "temperature", "quality"]),
              help="Split every period by this dimension.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv"]))
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the funnel as a PNG picture.")
def report(since, until, grain: str, by: str, fmt: str, chart: Path | None) -> None:
    """The shared Sales/Marketing KPIs from the SQL views: leads, conversion, close rate,
    revenue, sales cycle, time in stage, cost per lead and per customer."""
    import psycopg

    from streams.kpis import ReportQuery, funnel_chart, sections, summary

    if since and until and until <= since:
        raise click.BadParameter("must be after --since", param_hint="--until")
    settings = _db_settings("funnel report")
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
    money = Table(title="Revenue (customer cohort) and spend")
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


if __name__ == "__main__":
    main()
