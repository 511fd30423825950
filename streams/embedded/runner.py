"""Running things: the worker in this process, or the whole stack with a worker subprocess."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr

from funnel.config import ScoringModel, load_model
from streams.db.migrate import reset
from streams.settings import Settings
from streams.embedded.stack import EmbeddedBroker, EmbeddedPostgres, die_with_parent

log = logging.getLogger("funnel.runner")


def run_worker(settings: Settings, model: ScoringModel, loglevel: str = "warning",
               role: str = "worker") -> None:
    """Run the Faust worker until stopped. Blocks. ``role`` ``worker``: the pipeline, with the
    projection in a child process (``FUNNEL_PROJECTION=process``, kept running while this one
    runs), in this process (``inline``) or elsewhere (``off``); ``projection``: the projection
    alone (``funnel projection``)."""
    import faust

    from streams.worker.app import create_app
    from streams.worker.fence import fence_tables
    from streams.db.migrate import migrate
    from streams.clients import ensure_topics

    migrate(settings.dsn(), settings.db_schema)
    ensure_topics(settings)
    child = None
    if os.environ.get("FUNNEL_PROJECTION_PARENT"):
        orphan_watch(int(os.environ["FUNNEL_PROJECTION_PARENT"]))
    if role == "worker" and settings.projection == "process":
        child = ProjectionChild(settings)
        child.start()
    try:
        app = create_app(settings, model, role=role,
                         projection_url=child.url if child is not None else None)
        fence_tables(app, settings)
        worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
        # Faust's terminal spinner sets the root logger to DEBUG (to spin at every record): each
        # debug call of aiokafka and Faust then built a record the handler threw away, ~4% of
        # the worker's time
        worker.spinner = None
        logging.getLogger("transitions").setLevel(logging.WARNING)
        collect_less()
        worker.execute_from_commandline()
    finally:
        if child is not None:
            child.stop()


GC_THRESHOLDS = (500_000, 10, 20)   # Python's: (700, 10, 10)


def collect_less() -> None:
    """Python's cyclic collector for a process that allocates a lot over a long-lived heap (Faust,
    the cache): what exists now is frozen out of its scans, a collection waits for 500,000 new
    objects, not 700 (the pure core: 18,328 → 21,299 events/s at 50,000, 6 full collections → 0;
    at 500,000 instead of 50,000, ~49,500 → ~52,300 events/s, and the loaded worker's youngest
    collections took 0.19 s instead of 0.75 s over the same 109,476 events: each examines the
    objects still alive, the fewer the longer it waits)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def orphan_watch(parent: int, grace: float = 30.0) -> None:
    """A projection child whose worker is gone is told to stop (SIGTERM, ``die_with_parent``);
    if it has not stopped ``grace`` seconds later, it ends at once."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        time.sleep(grace)
        log.error("the worker that started this projection process is gone: exiting")
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


STOPPED = (0, -signal.SIGINT, -signal.SIGTERM)   # exit codes of a process asked to stop


class ProjectionChild:
    """``funnel projection`` as a child of ``funnel worker``: on a core of its own (the pipeline
    is CPU-bound on one), in the worker's process group (a signal to the group reaches both),
    told to stop when the worker dies even by SIGKILL, and started again when it fails while
    the worker runs (``streams.embedded.supervise``, looked at every ``RESTART_SECONDS``; an exit
    asked for by a signal to the group — 0, SIGINT, SIGTERM — is the worker stopping too)."""

    RESTART_SECONDS = 5.0

    def __init__(self, settings: Settings) -> None:
        from streams.embedded.stack import free_port
        from streams.embedded.supervise import Supervisor

        port = free_port(frozenset({settings.http_port})) if settings.worker_port > 0 else 0
        self.settings = settings.model_copy(update={"worker_port": port})
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
        self.url = f"http://{host}:{port}" if port else None
        self.children = Supervisor(echo=log.error, stopped=STOPPED)
        self.stopping = threading.Event()
        self.lock = threading.Lock()   # no new child once ``stop`` has begun
        self.watch = threading.Thread(target=self._keep, name="projection-child", daemon=True)

    def start(self) -> None:
        self.children.add("projection process", self._spawn)
        self.watch.start()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "projection"],
            env={**worker_env(self.settings), "FUNNEL_PROJECTION_PARENT": str(os.getpid())},
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform == "linux" else None)

    def _keep(self) -> None:
        from streams.embedded.supervise import CrashLoop

        while not self.stopping.wait(self.RESTART_SECONDS):
            with self.lock:
                if self.stopping.is_set():
                    return
                try:
                    self.children.check()
                except CrashLoop as exc:
                    log.error("%s: not started again (the worker goes on without it)", exc)
                    return

    def stop(self, timeout: float = 20.0) -> None:
        with self.lock:
            self.stopping.set()
        for proc in self.children.procs():
            if proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.contextmanager
def stack(settings: Settings, *, echo=print) -> Iterator[Settings]:
    """Settings with broker and database filled in, starting the embedded ones that are unset."""
    broker, db, configured = None, None, frozenset({settings.http_port, settings.worker_port})
    try:
        if settings.broker is None:
            durable = settings.embedded_storage == "disk"
            broker = EmbeddedBroker(settings.data_dir, durable=durable, avoid=configured).start()
            kept = f"topics in {broker.store_dir}" if durable else "topics in memory"
            if not broker.fresh:
                kept += ", with the leads of earlier runs"
            else:   # the workers' tables on disk were of a broker that is gone
                shutil.rmtree(settings.data_dir / "worker", ignore_errors=True)
            echo(f"embedded broker (Tansu) at {broker.url}   ({kept})")
        if settings.database_url is None:
            db = EmbeddedPostgres(settings.data_dir, avoid=configured).start()
            echo(f"embedded PostgreSQL at {db.url}   (psql {db.url})")
        resolved = settings.model_copy(update={
            "broker": settings.broker or broker.url,  # type: ignore[union-attr]
            "database_url": settings.database_url or SecretStr(db.url),  # type: ignore[union-attr]
        })
        if broker is not None and db is not None and broker.fresh:
            # the embedded broker starts empty (in memory, or a new data dir), so does the table
            reset(resolved.dsn(), resolved.db_schema)
        yield resolved
    finally:
        if db is not None:
            db.stop()
        if broker is not None:
            broker.stop()


# the settings a child process gets as they are (``worker_env``)
PASSED = ("topic_prefix", "partitions", "replication_factor", "data_dir", "db_schema",
          "session_timeout", "flush_interval", "state_store", "state_cache", "state_cache_mb",
          "state_memory_mb", "flush_max_events", "fetch_wait", "max_event_bytes", "sink_max_items",
          "sink_interval", "stall_seconds", "log_level", "cooling_interval", "timer_interval",
          "http_host", "http_port", "worker_port", "collector_max_inflight",
          "collector_ack_timeout", "projection", "compression")


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("FUNNEL_ACCEL", "FUNNEL_ACCEL_DIR") or
           not k.startswith("FUNNEL_") and k not in ("BROKER_URL", "WEB_PORT", "STORE_URL")}
    env.update({"FUNNEL_BROKER": settings.broker or "", "FUNNEL_DATABASE_URL": settings.dsn()})
    env.update({f"FUNNEL_{name.upper()}": str(getattr(settings, name)) for name in PASSED})
    if settings.write_keys is not None:
        env["FUNNEL_WRITE_KEYS"] = settings.write_keys.get_secret_value()
    if settings.model is not None:
        env["FUNNEL_MODEL"] = str(settings.model)
    if settings.group_id:
        env["FUNNEL_GROUP_ID"] = settings.group_id
    return env


def spawn_worker(settings: Settings, log_path: Path | None = None,
                 command: str = "worker") -> subprocess.Popen:
    """``funnel worker`` (or another ``funnel`` command) in a child process (its own process
    group), stopped with its parent."""
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "wb") if log_path is not None else None
    try:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", command],
                                env=worker_env(settings), stdout=out, stderr=subprocess.STDOUT
                                if out else None, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent if sys.platform == "linux" else None)
    finally:
        if out is not None:
            out.close()


def spawn_collector(settings: Settings, log_path: Path | None = None,
                    timeout: float = 30.0) -> subprocess.Popen:
    """``funnel collector`` in a child process; returns once it listens."""
    from streams.embedded.stack import wait_for_port

    proc = spawn_worker(settings, log_path, command="collector")
    try:
        wait_for_port(settings.http_port, timeout, proc)
    except (RuntimeError, TimeoutError):
        stop_worker(proc)
        raise
    return proc


def stop_worker(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def wait_caught_up(settings: Settings, timeout: float = 300.0, proc: subprocess.Popen | None = None
                   ) -> bool:
    """Until the worker's groups (the pipeline's, the projection's) have committed everything on
    the input and snapshot topics."""
    from streams.clients import worker_lag

    deadline = time.monotonic() + timeout
    zero_in_a_row = 0
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the worker exited with code {proc.returncode}")
        try:
            lags = worker_lag(settings)
            lag = sum(lags.values())
            if lag and time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                log.warning("still behind: %s", lags)
        except Exception as exc:  # the group may not exist yet
            log.debug("lag not known yet: %s", exc)
            lag = -1
        zero_in_a_row = zero_in_a_row + 1 if lag == 0 else 0
        if zero_in_a_row >= 2:
            return True
        time.sleep(0.5)
    return False


def model_from(settings: Settings) -> ScoringModel:
    return load_model(settings.model)
