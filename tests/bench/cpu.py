"""Where the pipeline bench's CPU goes, process by process: the worker, its projection process,
PostgreSQL (the embedded server of the bench's data dir: its postmaster and every backend) and
the embedded broker — read from ``/proc`` (Linux), between two moments.

The worker's share is not the whole pipeline's cost: on a machine of two cores the other three
take the second core, and their CPU an event bounds what the pipeline can do there at all
(``machine_bound``)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, all its threads (0: it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def with_args(*needles: str) -> list[int]:
    """Processes whose command line holds every one of ``needles``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in args for n in needles):
            out.append(int(entry.name))
    return out


class CpuAccount:
    """CPU seconds each part of the pipeline used between ``start`` and ``stop`` (a process
    started in between counts from its start; one that ended in between is not counted)."""

    def __init__(self, worker: int, pg_data: Path) -> None:
        self.worker, self.pg_data = worker, str(pg_data)
        self.at_start: dict[int, float] = {}
        self.used: dict[str, float] = {}

    def parts(self) -> dict[str, list[int]]:
        postmasters = [p for p in with_args("postgres", self.pg_data) if p != os.getpid()]
        return {"worker": [self.worker],
                "projection": descendants(self.worker),
                "PostgreSQL": postmasters + [c for p in postmasters for c in descendants(p)],
                "broker": with_args("broker --listener-url")}

    def start(self) -> None:
        self.at_start = {pid: cpu_seconds(pid) for pids in self.parts().values() for pid in pids}

    def stop(self) -> dict[str, float]:
        self.used = {name: sum(max(cpu_seconds(p) - self.at_start.get(p, 0.0), 0.0) for p in pids)
                     for name, pids in self.parts().items()}
        return self.used


def per_event(used: dict[str, float], events: int) -> dict[str, float]:
    """Each part's CPU seconds as µs an event."""
    return {name: seconds / max(events, 1) * 1e6 for name, seconds in used.items()}


def machine_bound(used: dict[str, float], events: int, cores: int | None = None) -> str:
    """The parts' CPU an event, and what the whole pipeline could do on this machine's cores
    were they all busy with it and nothing else."""
    cores = cores or os.cpu_count() or 1
    per = per_event(used, events)
    total = sum(per.values())
    parts = ", ".join(f"{name} {us:,.0f}" for name, us in per.items())
    return (f"{parts} = {total:,.0f} µs of CPU an event in all; on {cores} cores at most "
            f"{cores * 1e6 / max(total, 1e-9):,.0f} events/s for the whole pipeline")
