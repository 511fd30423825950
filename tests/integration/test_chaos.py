"""Fast chaos runs (``tests.chaos.harness``): a worker killed five times during a stream with
hostile messages mixed in; two workers started at the same moment (their migrations race, the
group rebalances while the stream starts), then each killed once in turn (the other takes
its partitions over mid-stream and gives some back to the restarted one). Each ends
with table == replay, one chain of moves per lead, every invalid message dead-lettered with its
reason, and no stall. The long runs: ``python -m tests.chaos`` (README, "Chaos runs")."""

from __future__ import annotations

from tests.chaos.harness import Plan, groups_described, run
from tests.integration.conftest import fresh_settings


def test_a_worker_killed_five_times_among_hostile_messages_ends_as_the_replay(backends, tmp_path):
    settings = fresh_settings(backends, tmp_path, flush_max_events=200)
    out = run(settings, tmp_path, Plan(leads=150, hostile=600, kills=5, chunks=8))
    print(f"{out.leads} leads, {out.handoffs} handoffs, {out.dead_letters} dead letters, "
          f"{out.kills} kills, {out.seconds:.0f} s")
    assert out.kills == 5
    assert not out.problems, "\n".join(out.problems[:20])
    assert out.leads > 100 and out.handoffs > 20 and out.dead_letters >= 500
    # what a stall would report of the groups: the broker describes both
    described = groups_described(settings)
    assert f"group {settings.app_id}: " in described, described
    assert f"group {settings.projection_group}: " in described, described


def test_two_workers_started_together_each_killed_once_end_as_the_replay(backends, tmp_path):
    settings = fresh_settings(backends, tmp_path, flush_max_events=200)
    out = run(settings, tmp_path, Plan(leads=150, seed=5, hostile=100, kills=2, workers=2,
                                       chunks=8))
    print(f"{out.leads} leads, {out.handoffs} handoffs, {out.kills} kills, {out.seconds:.0f} s")
    assert out.kills == 2
    assert not out.problems, "\n".join(out.problems[:20])
    assert out.leads > 100 and out.handoffs > 20
