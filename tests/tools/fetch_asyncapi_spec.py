"""Fetch the official AsyncAPI 3.0 JSON Schema from the ``@asyncapi/specs`` npm package.

Run by ``make test`` and ``make unit``. No npm needed: the package tarball is read from the npm
registry and checked against its published sha512. The schema lands in ``.venv/asyncapi/3.0.0.json``, where
``tests/unit/test_published_schemas.py`` reads it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "@asyncapi/specs"
VERSION = "6.11.1"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/specs-{VERSION}.tgz"
INTEGRITY = ("sha512-A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9F"
             "mO6DSuKraQ==")
MEMBER = "package/schemas/3.0.0.json"
TARGET = Path(__file__).resolve().parents[2] / ".venv" / "asyncapi" / "3.0.0.json"


def fetch(target: Path = TARGET) -> Path:
    if target.exists():
        return target
    with urllib.request.urlopen(TARBALL, timeout=60) as r:
        data = r.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"{TARBALL}: integrity {digest} is not the published {INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            raise SystemExit(f"{TARBALL} has no {MEMBER}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(member.read())
    return target


if __name__ == "__main__":
    print(f"AsyncAPI 3.0 schema ({PACKAGE}@{VERSION}): {fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET)}")
