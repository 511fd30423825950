"""The package as a user or an image gets it: a wheel installed into a fresh venv, run from
another directory, carries its migrations, its default model and its web assets."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.integration.conftest import fresh_settings, query

ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], cwd: Path, **kw: object) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")
           and not k.startswith("FUNNEL_")}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_wheel_in_a_fresh_venv_run_elsewhere_creates_its_tables_and_finds_its_files(
        backends, tmp_path: Path):
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(ROOT)], tmp_path)
    (wheel,) = dist.glob("funnel-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)], tmp_path)
    # the dependencies come from the project's venv (a path entry: its .pth files, among them
    # the editable install of this checkout, are not read)
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  elsewhere).strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = run([str(python), "-c", "import streams, funnel; print(streams.__file__, "
                 "funnel.__file__)"], elsewhere)
    assert str(ROOT) not in where and str(venv) in where, where

    settings = fresh_settings(backends, tmp_path)
    applied = run([str(python), "-c", "import sys; from streams.db.migrate import migrate; "
                   "print(','.join(migrate(sys.argv[1], sys.argv[2])))", settings.dsn(),
                   settings.db_schema], elsewhere)
    assert applied.strip().split(",") == ["001_leads.sql", "002_explanations.sql",
                                          "003_lifecycle.sql", "004_kpis.sql"]
    tables = {r[0] for r in query(settings, "SELECT table_name FROM information_schema.tables "
                                  "WHERE table_schema = %s", settings.db_schema)}
    assert {"leads", "lead_transitions", "lead_orders", "campaign_costs", "kpi_funnel"} <= tables

    checked = run([str(venv / "bin" / "funnel"), "model", "check"], elsewhere)
    assert checked.startswith("ok: model 'default'"), checked
    page = run([str(python), "-c", "from streams.web.dashboard import page; "
                "print(len(page('dashboard.html')), len(page('funnel.css')))"], elsewhere)
    assert all(int(n) > 500 for n in page.split()), page
