"""``funnel up``'s children kept running: one that exits is started again, as a process
manager would (Kubernetes restarts a worker's pod; ``funnel up`` is the embedded stack's).

A worker ends on its own only on what it cannot decide past — e.g. the broker unreachable for
longer than the producer waits while a checkpoint is written: starting again from the committed
offsets is the recovery (nothing is lost, the checkpoint protocol says why). A child that keeps
failing right after its start (``LIMIT`` times in a row, each within ``QUICK_SECONDS``) is a crash
loop, not an accident: ``check`` raises :class:`CrashLoop` and ``funnel up`` stops with it.
The worker keeps its projection process running the same way (``runner.ProjectionChild``)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

LIMIT = 5             # failures in a row, each right after its start: a crash loop
QUICK_SECONDS = 60.0  # "right after its start"
MAX_DELAY = 30.0      # the wait before a restart doubles from 1 s up to this


class CrashLoop(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    spawn: Callable[[], subprocess.Popen]
    proc: subprocess.Popen | None
    started: float
    fails: int = 0
    due: float | None = None   # when it is started again (it exited)


class Supervisor:
    """``stopped``: exit codes of a child that was asked to stop (not started again)."""

    def __init__(self, echo: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic,
                 stopped: tuple[int, ...] = ()) -> None:
        self.echo, self.clock, self.stopped = echo, clock, stopped
        self.children: list[Child] = []

    def add(self, name: str, spawn: Callable[[], subprocess.Popen],
            proc: subprocess.Popen | None = None) -> subprocess.Popen:
        """Keep ``name`` running: ``proc`` if given (already started), else ``spawn()``'s."""
        child = Child(name, spawn, proc or spawn(), self.clock())
        self.children.append(child)
        assert child.proc is not None
        return child.proc

    def check(self) -> None:
        """One look at every child: one that exited is started again once its delay passed."""
        now = self.clock()
        for child in self.children:
            code = child.proc.poll() if child.proc is not None else -1
            if code is None:
                if now - child.started >= QUICK_SECONDS:
                    child.fails = 0   # it ran: the next exit starts a new count
                continue
            if code in self.stopped:
                continue
            if child.due is None:
                self._exited(child, code, now)
            if child.due is not None and now >= child.due:
                self._restart(child, now)

    def _exited(self, child: Child, code: int, now: float) -> None:
        child.fails = child.fails + 1 if now - child.started < QUICK_SECONDS else 1
        if child.fails >= LIMIT:
            raise CrashLoop(f"the {child.name} exited with code {code}, {child.fails} times in "
                            f"a row within {QUICK_SECONDS:.0f}s of its start")
        delay = min(2.0 ** (child.fails - 1), MAX_DELAY)
        child.due = now + delay
        self.echo(f"the {child.name} exited with code {code}; starting it again in "
                  f"{delay:.0f}s")

    def _restart(self, child: Child, now: float) -> None:
        child.due, child.started = None, now
        try:
            child.proc = child.spawn()
        except Exception as exc:  # noqa: BLE001  (a failed start counts as a quick exit)
            child.proc = None
            self.echo(f"the {child.name} did not start: {exc}")

    def procs(self) -> list[subprocess.Popen]:
        return [c.proc for c in self.children if c.proc is not None]
