"""The core compiled to C with mypyc, used when it was built from the sources as they are.

``build`` (``make`` runs it) compiles the hot modules of the core and of the worker's
Faust-free pipeline (``COMPILED``) into ``<sys.prefix>/funnel-accel`` (beside the interpreter
they were built for) with a manifest: the digest of every Python source of the packages, the
extension suffix, mypyc's version. At import, :func:`install` puts a finder first on
``sys.meta_path`` that loads the compiled modules instead of their sources, all or none: only
when the packages' sources are still the ones built from (compiled modules call each other
directly and rely on the types of what they import, so one edited source means none of them is
used). Otherwise, when nothing was built (no C compiler) or with ``FUNNEL_ACCEL=off``, the same
modules run as Python — the same answers (a test runs simulated traffic both ways and compares
every record written), slower.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

COMPILED = ("funnel.scoring", "funnel.decide", "funnel.moves", "funnel.timers", "funnel.guards",
            "funnel.history", "funnel.merge", "funnel.lead_json", "schemas.limits",
            "schemas.wire", "schemas.event_values", "schemas.construct", "schemas.dumps",
            # the worker's Faust-free pipeline: route, decide, emit, keep
            "streams.records", "streams.worker.pipeline", "streams.worker.route",
            "streams.worker.store", "streams.worker.emit", "streams.worker.identity",
            "streams.worker.outbox", "streams.worker.journal", "streams.worker.checkpoint",
            "streams.worker.batches", "streams.worker.schedule")
PACKAGES = ("funnel", "schemas", "streams")
ROOT = Path(__file__).resolve().parent.parent   # where the packages are
MANIFEST = "manifest.json"


def accel_dir() -> Path:
    return Path(os.environ.get("FUNNEL_ACCEL_DIR") or Path(sys.prefix) / "funnel-accel")


def source(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def sources_digest(root: Path = ROOT) -> str:
    """SHA-256 of every Python source of ``PACKAGES`` under ``root``, with its path."""
    h = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def switched_off() -> bool:
    return os.environ.get("FUNNEL_ACCEL", "on").lower() in ("off", "0", "no")


def manifest_of(where: Path) -> dict:
    """The build's manifest; empty when there is none (or it is not one)."""
    try:
        manifest = json.loads((where / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def usable(where: Path, root: Path = ROOT) -> dict[str, Path] | None:
    """Module name → compiled file, when the build in ``where`` matches this interpreter and
    every source in ``root`` as it is now; else None (and the sources are imported)."""
    manifest = manifest_of(where)
    try:
        if manifest.get("ext_suffix") != sysconfig.get_config_var("EXT_SUFFIX"):
            return None
        if manifest["modules"] != list(COMPILED) or manifest["sources"] != sources_digest(root):
            return None
        files = {name: where / file for name, file in manifest["files"].items()}
    except (OSError, KeyError, TypeError, AttributeError):
        return None
    return files if all(f.is_file() for f in files.values()) else None


class _Finder:
    """Finds the compiled modules (and mypyc's shared library) in the build."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(self, name: str, path: object = None, target: object = None):  # noqa: ANN201
        file = self.files.get(name)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, str(file))
        return importlib.util.spec_from_file_location(name, file, loader=loader)


_installed: list[_Finder] = []


def install() -> bool:
    """Use the compiled core if it is usable (idempotent). Whether it is in use."""
    if not _installed:
        files = None if switched_off() else usable(accel_dir())
        finder = _Finder(files or {})
        _installed.append(finder)
        if files:
            if any(name in sys.modules for name in COMPILED):
                return False   # too late: some were imported from their sources already
            sys.meta_path.insert(0, finder)
    return bool(_installed[0].files)


def active() -> bool:
    """Whether the core runs compiled in this process (its modules load from the build)."""
    return bool(_installed and _installed[0].files) and _installed[0] in sys.meta_path


def describe() -> str:
    """How the core runs, and why when not compiled."""
    if active():
        return "runs compiled (mypyc)"
    if switched_off():
        return "runs as Python (FUNNEL_ACCEL=off)"
    if not (accel_dir() / MANIFEST).is_file():
        return "runs as Python (not compiled: make accel)"
    return "runs as Python (its compiled build is not of these sources: make accel)"


def build(where: Path | None = None, root: Path = ROOT) -> Path:
    """Compile ``COMPILED`` with mypyc into ``where`` (a copy of the sources is compiled in a
    temporary directory: nothing is written beside the sources)."""
    where = where or accel_dir()
    built_from = sources_digest(root)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for package in PACKAGES:
            shutil.copytree(root / package, work / package, ignore=shutil.ignore_patterns(
                "__pycache__", "*.so", "models", "migrations", "assets"))
        sources = [str(source(m, Path("."))) for m in COMPILED]
        # the copy's packages only (PYTHONPATH would make mypy check others as sources), and
        # what mypy says of the modules they import is not ours to fix here
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
        done = subprocess.run([sys.executable, "-m", "mypyc", "--follow-imports=silent",
                               *sources], cwd=work, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={**env, "MYPY_CACHE_DIR": tmp + "/c"})
        if done.returncode:
            said = [line for line in done.stdout.splitlines() if "error" in line.lower()]
            raise OSError("mypyc failed: "
                          + " | ".join(said[-5:] or done.stdout.splitlines()[-5:]))
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        files = {m: source(m, Path(".")).with_suffix(suffix) for m in COMPILED}
        files.update({p.name.removesuffix(suffix): p.relative_to(work)
                      for p in work.glob(f"*__mypyc{suffix}")})
        shutil.rmtree(where, ignore_errors=True)
        for file in files.values():
            (where / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / file, where / file)
    (where / MANIFEST).write_text(json.dumps({
        "ext_suffix": suffix, "mypyc": mypyc_version(), "modules": list(COMPILED),
        "sources": built_from,
        "files": {name: str(file) for name, file in files.items()}}, indent=1), "utf-8")
    return where


def mypyc_version() -> str | None:
    """The installed mypy's version (mypyc comes with it), None without it."""
    try:
        from mypy.version import __version__
    except ImportError:
        return None
    return __version__


def main() -> None:
    """``build``: compile (again when the sources or mypyc changed), or say why not (the core
    then runs as Python)."""
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python -c 'import funnel.accel as a; a.main()' build")
    if usable(accel_dir()) and manifest_of(accel_dir()).get("mypyc") == mypyc_version():
        (accel_dir() / MANIFEST).touch()   # for make: up to date
        print(f"compiled core up to date in {accel_dir()}")
        return
    try:
        print(f"compiled core built in {build()}")
    except OSError as exc:
        print(f"note: the core was not compiled ({exc}); it runs as Python, slower")


if __name__ == "__main__":
    main()
