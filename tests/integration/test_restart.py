"""``funnel up`` on the embedded stack keeps everything across a restart: stopped with SIGTERM
(what Ctrl-C does) or killed with its whole process group (SIGKILL, no cleanup at all), then
started again on the same data dir, every lead row, transition and handoff is still there, and
new events add to the old state instead of starting the lead from zero.

These tests run their own embedded stack (the one ``funnel up`` starts), whatever backends the
other integration tests use."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
import requests

from streams.clients import read_all
from streams.embedded.stack import free_port
from streams.settings import Settings
from tests.integration.conftest import WRITE_KEY
from tests.integration.messages import ev
from tests.integration.test_collector import TRAITS

EXPORT = re.compile(r"export FUNNEL_BROKER=(\S+)\s+FUNNEL_DATABASE_URL=(\S+)")


class Up:
    """``funnel up`` as a user runs it: its own process group, its output read for the URLs."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.http_port = data_dir, free_port()
        self.proc: subprocess.Popen | None = None
        self.broker = self.dsn = ""

    def start(self, timeout: float = 90) -> "Up":
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("FUNNEL_") and k not in ("BROKER_URL", "WEB_PORT")}
        env.update(FUNNEL_DATA_DIR=str(self.data_dir), FUNNEL_HTTP_PORT=str(self.http_port),
                   FUNNEL_WORKER_PORT="0", FUNNEL_WRITE_KEYS=WRITE_KEY, FUNNEL_PARTITIONS="4",
                   FUNNEL_TIMER_INTERVAL="0", FUNNEL_COOLING_INTERVAL="0",
                   COLUMNS="400")   # rich: the export line on one line
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "up.log", "ab")
        seen = log.tell()   # this run's output starts here
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "up"], env=env,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"funnel up exited:\n{self.log()}")
            out = self.log()[seen:]
            if (found := EXPORT.search(out)) and "worker started" in out:
                self.broker, self.dsn = found.groups()
                return self
            time.sleep(0.2)
        self.stop(signal.SIGTERM)   # leave nothing running behind a failed start
        raise AssertionError(f"funnel up did not start:\n{self.log()}")

    def log(self) -> str:
        return (self.data_dir / "up.log").read_text(errors="replace")

    def settings(self) -> Settings:
        return Settings(broker=self.broker, topic_prefix="funnel.", partitions=4)

    def post(self, batch: list[dict]) -> None:
        r = requests.post(f"http://127.0.0.1:{self.http_port}/v1/batch",
                          data=orjson.dumps({"batch": batch}), auth=(WRITE_KEY, ""), timeout=30)
        assert r.status_code == 200 and r.json()["rejected"] == 0, r.text

    def rows(self, sql: str, *args: object) -> list[tuple]:
        try:
            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                return conn.execute(sql, args).fetchall()
        except psycopg.Error:
            return []

    def lead(self, lead_id: str):
        rows = self.rows("SELECT stage, events_count, version, interest_score FROM leads "
                         "WHERE lead_id = %s", lead_id)
        return rows[0] if rows else None

    def wait(self, predicate, what: str, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, \
                f"funnel up exited while waiting for {what}:\n{self.log()[-3000:]}"
            if (found := predicate()):
                return found
            time.sleep(0.3)
        raise AssertionError(f"no {what} after {timeout}s:\n{self.log()[-3000:]}")

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        if sig == signal.SIGKILL:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_funnel_up_keeps_every_lead_transition_and_handoff_across_a_restart(tmp_path, sig):
    up = Up(tmp_path / "data").start()
    leads = [f"u-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    try:
        for lead in leads:
            up.post([ev(lead, "identify", traits={**TRAITS, "email": f"{lead}@globex.io"}),
                     ev(lead, name="Content Downloaded", minute=1),
                     ev(lead, name="Demo Requested", minute=2),
                     ev(lead, name="Trial Started", minute=3)])
        for lead in leads:
            up.wait(lambda lead=lead: (r := up.lead(lead)) and r[0] == "sql" and r, "sql")
        time.sleep(3)   # past a checkpoint of the projection and the changelog
        before = {lead: up.lead(lead) for lead in leads}
        transitions = up.rows("SELECT lead_id, to_stage FROM lead_transitions ORDER BY 1, 2")
        handoffs = sorted(r.value for r in read_all(up.settings(), "funnel.handoff.sql",
                                                    timeout=5) if r.key.decode() in leads)
        assert len(handoffs) == len(leads) and len(transitions) >= 2 * len(leads)
    finally:
        up.stop(sig)

    up.start()
    try:
        assert {lead: up.lead(lead) for lead in leads} == before
        assert up.rows("SELECT lead_id, to_stage FROM lead_transitions ORDER BY 1, 2") \
            == transitions
        again = sorted(r.value for r in read_all(up.settings(), "funnel.handoff.sql", timeout=5)
                       if r.key.decode() in leads)
        assert again == handoffs   # the same handoffs: none lost, none sent twice
        # a new event adds to the old state: one more event, still at sql, a newer version
        up.post([ev(leads[0], name="Content Downloaded", minute=30)])
        stage, events, version, _ = up.wait(
            lambda: (r := up.lead(leads[0])) and r[1] > before[leads[0]][1] and r, "the new event")
        assert stage == "sql" and events == before[leads[0]][1] + 1
        assert version > before[leads[0]][2]
    finally:
        up.stop(signal.SIGTERM)


def children_of(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_funnel_up_starts_its_worker_again_when_it_is_killed_and_loses_nothing(tmp_path):
    up = Up(tmp_path / "data").start()
    lead = f"u-{uuid.uuid4().hex[:8]}"
    try:
        up.post([ev(lead, "identify", traits={**TRAITS, "email": f"{lead}@globex.io"}),
                 ev(lead, name="Demo Requested", minute=1)])
        before = up.wait(lambda: up.lead(lead), "the lead's row")
        assert up.proc is not None
        worker = next(pid for pid in children_of(up.proc.pid)
                      if b"streams.cli\x00worker" in Path(f"/proc/{pid}/cmdline").read_bytes())
        os.killpg(worker, signal.SIGKILL)   # the worker and its projection child, not `up`
        up.wait(lambda: "the worker exited with code -9; starting it again" in up.log(),
                "the restart")
        up.post([ev(lead, name="Content Downloaded", minute=2)])
        _, events, version, _ = up.wait(
            lambda: (r := up.lead(lead)) and r[1] > before[1] and r, "the event after it")
        assert events == before[1] + 1 and version > before[2]
        assert up.proc.poll() is None   # `funnel up` itself never stopped
    finally:
        up.stop(signal.SIGTERM)
