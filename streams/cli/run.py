"""Running Funnel: ``worker``, ``up``, ``collector`` and ``demo``."""

from __future__ import annotations

import time

import click

from streams.cli.common import console
from streams.cli.common import load_model_or_fail as _model
from streams.cli.common import load_settings as _settings
from streams.cli.common import sigterm_is_ctrl_c as _sigterm_is_ctrl_c
from streams.cli.group import main
from streams.cli.traffic import publish_traffic
from funnel.accel import describe as core
from streams.settings import Settings


LOGLEVEL = click.option("--loglevel", default=None,
                        type=click.Choice(["debug", "info", "warning", "error"]),
                        help="Default: FUNNEL_LOG_LEVEL, else warning.")


@main.command()
@LOGLEVEL
def worker(loglevel: str | None) -> None:
    """Run the pipeline worker and the projection against FUNNEL_BROKER and FUNNEL_DATABASE_URL
    (the projection in a child process by default: FUNNEL_PROJECTION).

    Start several to scale out: they share the partitions of one consumer group."""
    _run("worker", loglevel)


@main.command()
@LOGLEVEL
def projection(loglevel: str | None) -> None:
    """Run only the projection (funnel.leads and funnel.costs into PostgreSQL), in its own
    consumer group: what `funnel worker` starts beside itself unless FUNNEL_PROJECTION is
    inline or off. Start several to scale out."""
    _run("projection", loglevel)


def _run(role: str, loglevel: str | None) -> None:
    from streams.embedded.runner import run_worker

    settings = _settings()
    if not settings.broker or settings.database_url is None:
        raise click.UsageError(f"funnel {role} needs FUNNEL_BROKER and FUNNEL_DATABASE_URL "
                               "(or run 'funnel up' to start the embedded stack)")
    model = _model(settings)
    import psycopg

    try:
        run_worker(settings, model, loglevel or settings.log_level, role=role)
    except psycopg.Error as exc:
        raise click.ClickException(f"PostgreSQL at FUNNEL_DATABASE_URL: {str(exc).strip()}") \
            from None


@main.command()
def up() -> None:
    """Start the stack (embedded broker/PostgreSQL where unset), the worker, the projection and
    the HTTP collector and dashboard, until Ctrl-C. A child that exits is started again (a
    crash loop stops everything)."""
    from streams.embedded.runner import spawn_collector, spawn_worker, stack, stop_worker
    from streams.embedded.supervise import CrashLoop, Supervisor

    with stack(_prepared(http=True), echo=console.print) as s:
        s.data_dir.mkdir(parents=True, exist_ok=True)
        children = Supervisor(echo=lambda m: console.print(f"[yellow]{m}[/yellow]"))
        try:
            worker = children.add("worker", lambda: spawn_worker(s))
            _keep_http(children, s, spawn_collector)
            console.print(f"worker started (pid {worker.pid}); topics prefixed "
                          f"'{s.topic_prefix}'; the core {core()}. Ctrl-C to stop.")
            console.print(f"  export FUNNEL_BROKER={s.broker} FUNNEL_DATABASE_URL={s.dsn()}")
            while True:
                children.check()
                time.sleep(0.5)
        except CrashLoop as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            console.print("stopping…")
        finally:
            for p in reversed(children.procs()):
                stop_worker(p)


def _prepared(http: bool) -> Settings:
    """The settings, once the model loads, Ctrl-C and SIGTERM stop us cleanly and the ports the
    children will listen on are free."""
    settings = _settings()
    _model(settings)
    _sigterm_is_ctrl_c()
    _ports_free(settings, http=http)
    return settings


def _ports_free(s: Settings, http: bool) -> None:
    """Fail early, naming the setting, when a port the children will listen on is taken."""
    from streams.embedded.stack import port_free

    wanted = [("FUNNEL_WORKER_PORT", s.worker_port)] if s.worker_port else []
    if http:
        wanted.append(("FUNNEL_HTTP_PORT", s.http_port))
    for name, port in wanted:
        if not port_free(s.http_host, port):
            off = " (or 0: no /metrics)" if name == "FUNNEL_WORKER_PORT" else ""
            raise click.ClickException(f"port {port} on {s.http_host} is taken: set {name} to a "
                                       f"free port{off}")


def _keep_http(children, s: Settings, spawn_collector) -> None:
    """The collector started (``_start_http``) and kept running by ``children``."""
    children.add("collector", lambda: spawn_collector(s, s.data_dir / "collector.log"),
                 _start_http(s, spawn_collector))


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
    from streams.web.collector import serve
    from streams.clients import ensure_topics

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


@main.command()
@click.option("--leads", default=400, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--serve", is_flag=True, help="Keep the stack running after the summary.")
def demo(leads: int, days: int, seed: int, serve: bool) -> None:
    """`up` + `simulate`: wait for the pipeline to catch up, print a funnel summary, exit 0."""
    from streams.cli.report import print_summary
    from streams.embedded.runner import (spawn_collector, spawn_worker, stack, stop_worker,
                                         wait_caught_up)
    from streams.embedded.supervise import CrashLoop, Supervisor

    children = Supervisor(echo=lambda m: console.print(f"[yellow]{m}[/yellow]"))

    with stack(_prepared(http=serve), echo=console.print) as s:
        s.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = s.data_dir / "worker.log"
        proc = children.add("worker", lambda: spawn_worker(s, log_path))
        try:
            if serve:
                _keep_http(children, s, spawn_collector)
            console.print(f"worker started (pid {proc.pid}, log {log_path})")
            started = time.monotonic()

            def wait() -> None:
                if not wait_caught_up(s, timeout=600, proc=proc):
                    raise click.ClickException("the pipeline did not catch up in 10 minutes")

            events, commands = publish_traffic(s, leads, days, seed, wait=wait)
            wait()
            elapsed = time.monotonic() - started
            print_summary(s, console, events + commands, elapsed)
            if serve:
                console.print(f"serving; open the dashboard at http://{s.http_host}:"
                              f"{s.http_port}/ — Ctrl-C to stop")
                while True:   # as `funnel up`: a child that exits is started again
                    children.check()
                    time.sleep(0.5)
        except CrashLoop as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            console.print("stopping…")
        finally:
            for p in reversed(children.procs()):
                stop_worker(p)
