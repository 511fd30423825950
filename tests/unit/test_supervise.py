"""``funnel up``'s supervisor with fake processes and a fake clock."""

from __future__ import annotations

import pytest

from streams.embedded.supervise import LIMIT, CrashLoop, Supervisor


class Proc:
    def __init__(self) -> None:
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_child_that_exits_is_started_again_after_a_delay_that_doubles_while_it_fails_fast():
    clock, said, started = Clock(), [], []

    def spawn() -> Proc:
        started.append(Proc())
        return started[-1]

    sup = Supervisor(echo=said.append, clock=clock)
    sup.add("worker", spawn)
    clock.now = 600.0            # it ran ten minutes, then failed
    sup.check()
    started[-1].code = 1
    sup.check()
    assert len(started) == 1 and said == [
        "the worker exited with code 1; starting it again in 1s"]
    clock.now += 1.0
    sup.check()
    assert len(started) == 2 and sup.procs() == [started[-1]]
    for delay in (2, 4, 8):      # it now fails right after each start: 2, 4, 8 s
        started[-1].code = 1
        sup.check()
        assert said[-1].endswith(f"in {delay}s")
        clock.now += delay - 0.5
        sup.check()
        assert len(started) == 2 + (2, 4, 8).index(delay)   # not before its delay
        clock.now += 0.5
        sup.check()
    started[-1].code = 1
    with pytest.raises(CrashLoop, match=f"{LIMIT} times in a row"):
        sup.check()


def test_a_child_that_ran_long_enough_starts_a_new_count_and_a_failed_start_counts():
    clock, said = Clock(), []
    procs = [Proc()]
    boom = [False]

    def spawn() -> Proc:
        if boom[0]:
            raise RuntimeError("port taken")
        procs.append(Proc())
        return procs[-1]

    sup = Supervisor(echo=said.append, clock=clock)
    sup.add("collector", spawn, procs[0])
    for _ in range(LIMIT - 1):   # four quick failures…
        procs[-1].code = 2
        sup.check()
        clock.now += 30.0
        sup.check()
    clock.now += 61.0            # …then it runs for a minute: the count starts again
    sup.check()
    procs[-1].code = 2
    sup.check()
    assert said[-1].endswith("in 1s")
    boom[0] = True
    clock.now += 1.0
    sup.check()                  # the start itself fails: reported, and counted
    assert said[-1] == "the collector did not start: port taken" and sup.procs() == []
    sup.check()
    assert said[-1] == "the collector exited with code -1; starting it again in 2s"


def test_a_child_asked_to_stop_is_not_started_again():
    clock, said, started = Clock(), [], []

    def spawn() -> Proc:
        started.append(Proc())
        return started[-1]

    sup = Supervisor(echo=said.append, clock=clock, stopped=(0, -15))
    sup.add("projection process", spawn)
    started[-1].code = -15       # the worker's process group got SIGTERM: it stops too
    clock.now += 10.0
    sup.check()
    assert len(started) == 1 and said == []
