"""The compiled core (``funnel.accel``): the same answers as the Python core, and used only
when it was built from the sources as they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from funnel import accel

ROOT = Path(__file__).resolve().parents[2]


def digest_run(*args: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tests.unit.accel_digest", *args], cwd=ROOT,
                         env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_compiled_core_writes_what_the_python_core_writes():
    """Simulated traffic with identity merges, sales commands and hostile messages through the
    worker's pipeline, then the periodic pass on every lead: every record byte for byte.
    (It told ``no_nul=0.0`` from ``no_nul=0`` in a dead letter's reason: mypyc had made the
    limits' table floats.)"""
    compiled = digest_run()
    python = digest_run(FUNNEL_ACCEL="off")
    assert compiled["core"] == "runs compiled (mypyc)", \
        f"the compiled core is not in use ({compiled['core']}): run 'make accel'"
    assert python["core"] == "runs as Python (FUNNEL_ACCEL=off)"
    assert compiled["records"] == python["records"] > 20_000
    assert compiled["digest"] == python["digest"]


def test_the_compiled_core_releases_what_it_allocates():
    """Two more replays of the same traffic (the core alone, and the worker's pipeline) leave
    no more allocated compiled than as Python (with mypy 1.13's mypyc the worker grew by 18 KB
    a lead id: each history line leaked, ~5 MB a replay here)."""
    compiled, python = digest_run("leak"), digest_run("leak", FUNNEL_ACCEL="off")
    assert compiled["core"] == "runs compiled (mypyc)", compiled["core"]
    assert compiled["growth"] < python["growth"] + 200_000, \
        f"compiled: {compiled['growth']:,} bytes more after two more replays, " \
        f"as Python: {python['growth']:,}"


@pytest.fixture
def build(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the packages' sources and a build of them (its files stand-ins)."""
    root, where = tmp_path / "src", tmp_path / "build"
    for package in accel.PACKAGES:
        for path in (accel.ROOT / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                copy = root / path.relative_to(accel.ROOT)
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_bytes(path.read_bytes())
    files = {}
    for module in accel.COMPILED:
        files[module] = f"{module.replace('.', '/')}.so"
        (where / files[module]).parent.mkdir(parents=True, exist_ok=True)
        (where / files[module]).write_bytes(b"")
    (where / accel.MANIFEST).write_text(json.dumps({
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"), "modules": list(accel.COMPILED),
        "sources": accel.sources_digest(root), "files": files}))
    return root, where


def test_a_build_is_used_for_the_sources_it_was_built_from(build):
    root, where = build
    files = accel.usable(where, root)
    assert files is not None and set(files) == set(accel.COMPILED)
    assert files["funnel.decide"] == where / "funnel/decide.so"


@pytest.mark.parametrize("module", ["schemas/wire.py", "funnel/model.py", "streams/settings.py"])
def test_a_build_is_not_used_once_a_source_changed(build, module):
    """A compiled module's own source, or one whose types they rely on (the lead's fields, the
    settings): all or none."""
    root, where = build
    path = root / module
    path.write_text(path.read_text() + "\n# edited\n")
    assert accel.usable(where, root) is None


def test_a_new_source_file_counts_too(build):
    root, where = build
    (root / "funnel" / "extra.py").write_text("X = 1\n")
    assert accel.usable(where, root) is None


@pytest.mark.parametrize("spoil", ["another interpreter", "a file missing", "no manifest",
                                   "a broken manifest", "a module missing"])
def test_a_build_that_does_not_fit_is_not_used(build, spoil):
    root, where = build
    manifest = json.loads((where / accel.MANIFEST).read_text())
    if spoil == "another interpreter":
        manifest["ext_suffix"] = ".cpython-312-x86_64-linux-gnu.so"
    elif spoil == "a file missing":
        (where / "funnel/merge.so").unlink()
    elif spoil == "a module missing":
        manifest["modules"].remove("funnel.merge")
    if spoil == "no manifest":
        (where / accel.MANIFEST).unlink()
    elif spoil == "a broken manifest":
        (where / accel.MANIFEST).write_text("{not json")
    else:
        (where / accel.MANIFEST).write_text(json.dumps(manifest))
    assert accel.usable(where, root) is None


def test_the_children_of_funnel_up_run_the_core_as_it_was_asked(monkeypatch, tmp_path):
    from streams.embedded.runner import worker_env
    from streams.settings import Settings

    monkeypatch.setenv("FUNNEL_ACCEL", "off")
    monkeypatch.setenv("FUNNEL_ACCEL_DIR", str(tmp_path))
    monkeypatch.setenv("FUNNEL_NOT_A_SETTING", "x")   # the rest come from the settings only
    env = worker_env(Settings(data_dir=tmp_path, broker="kafka://127.0.0.1:1",
                              database_url="postgresql://127.0.0.1:1/x"))
    assert env["FUNNEL_ACCEL"] == "off" and env["FUNNEL_ACCEL_DIR"] == str(tmp_path)
    assert "FUNNEL_NOT_A_SETTING" not in env
