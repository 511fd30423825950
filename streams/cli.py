"""The ``funnel`` command (click, the same library as Faust's own CLI)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
import orjson
from rich.console import Console

from funnel.config import ModelError, load_model
from streams.cli_common import console, err
from streams.cli_common import load_model_or_fail as _model
from streams.cli_common import load_settings as _settings
from streams.cli_common import progress_bar as _progress
from streams.cli_common import sigterm_is_ctrl_c as _sigterm_is_ctrl_c
from streams.settings import Settings


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
    _ports_free(settings, http=True)
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


def _ports_free(s: Settings, http: bool) -> None:
    """Fail early, naming the setting, when a port the children will listen on is taken."""
    from streams.stack import port_free

    wanted = [("FUNNEL_WORKER_PORT", s.worker_port)] if s.worker_port else []
    if http:
        wanted.append(("FUNNEL_HTTP_PORT", s.http_port))
    for name, port in wanted:
        if not port_free(s.http_host, port):
            off = " (or 0: no /metrics)" if name == "FUNNEL_WORKER_PORT" else ""
            raise click.ClickException(f"port {port} on {s.http_host} is taken: set {name} to a "
                                       f"free port{off}")


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
    _ports_free(settings, http=serve)
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


from streams import cli_tools  # noqa: E402  (the commands of cli_tools join the group)

for command in (cli_tools.schema, cli_tools.dlq, cli_tools.costs, cli_tools.report):
    main.add_command(command)

if __name__ == "__main__":
    main()
