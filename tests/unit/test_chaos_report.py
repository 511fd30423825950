"""What a chaos run's stall report carries when its logs are gone by the time it is read."""

from __future__ import annotations

import os
from pathlib import Path

from streams.settings import Settings
from tests.chaos.harness import Fleet


def test_a_stall_report_carries_the_newest_logs_last_warnings_and_errors(tmp_path: Path) -> None:
    older, newer = tmp_path / "worker-0-1.log", tmp_path / "worker-0-2.log"
    older.write_text("[t] [1] [ERROR]: of the worker killed before\n")
    lines = [f"[t] [2] [INFO]: taken {i}" for i in range(50)]
    lines += [f"[t] [3] [WARNING]: Heartbeat failed for group funnel-projection {i}"
              for i in range(20)]
    lines += ["[t] [3] [ERROR]: " + "x" * 500, "[t] [2] [INFO]: the last line"]
    newer.write_text("\n".join(lines) + "\n")
    os.utime(older, (1, 1))   # the newer log is the one written last

    warnings = Fleet(Settings(), tmp_path, 1).warnings()
    assert len(warnings) == 12
    assert warnings[:-1] == [f"[t] [3] [WARNING]: Heartbeat failed for group funnel-projection {i}"
                             for i in range(9, 20)]
    assert warnings[-1].startswith("[t] [3] [ERROR]: xxx") and len(warnings[-1]) == 240
    assert Fleet(Settings(), tmp_path / "none", 1).warnings() == []
