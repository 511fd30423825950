"""The pipeline bench's CPU account (``tests.bench.cpu``): each part's CPU between two moments,
read from /proc, and what they bound the whole pipeline to."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.cpu import CpuAccount, cpu_seconds, descendants, machine_bound, with_args


def spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_the_account_counts_a_process_and_its_children_from_start_to_stop(tmp_path: Path):
    child = subprocess.Popen([sys.executable, "-c", "import time; t = time.process_time() + 0.4\n"
                              "while time.process_time() < t: pass\nprint('spun', flush=True)\n"
                              "time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        account = CpuAccount(os.getpid(), tmp_path / "pg")   # this test as the "worker"
        account.start()   # (the child is still starting its interpreter)
        assert child.pid in descendants(os.getpid())
        spin(0.3)
        assert child.stdout is not None and child.stdout.readline() == b"spun\n"
        used = account.stop()
    finally:
        child.kill()
        child.wait()
    assert 0.25 <= used["worker"] <= 5.0          # this process's spin (and pytest's own)
    assert 0.3 <= used["projection"] <= 1.0       # the child's spin, as the projection's is counted
    assert used["PostgreSQL"] == 0.0              # no server has this data dir
    assert set(used) == {"worker", "projection", "PostgreSQL", "broker"}


def test_a_gone_process_reads_as_no_cpu_and_the_parts_are_found_by_their_arguments():
    assert cpu_seconds(2 ** 22 + 7) == 0.0   # past Linux's largest pid
    marker = f"funnel-bench-marker-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        deadline = time.monotonic() + 10
        while not with_args(marker) and time.monotonic() < deadline:
            time.sleep(0.02)   # until the child has its own command line (after its exec)
        assert with_args(marker, "time.sleep") == [proc.pid]
        assert with_args(marker, "not-in-its-arguments") == []
    finally:
        proc.kill()
        proc.wait()


def test_the_machine_bound_is_the_cores_over_the_cpu_an_event_of_all_parts():
    line = machine_bound({"worker": 2.0, "projection": 1.0, "PostgreSQL": 0.5, "broker": 0.5},
                         events=10_000, cores=2)
    # 400 µs an event in all: two cores do at most 5,000 events/s
    assert line.startswith("worker 200, projection 100, PostgreSQL 50, broker 50 = 400 µs")
    assert line.endswith("on 2 cores at most 5,000 events/s for the whole pipeline")
