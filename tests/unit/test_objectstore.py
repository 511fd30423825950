"""The embedded broker's object store over real HTTP: the conditional writes the broker's
optimistic updates rely on, and listings that walk only the folder the prefix names."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from streams.embedded.objectstore import serve

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture
def store(tmp_path):
    (tmp_path / "bkt").mkdir()
    server = serve(tmp_path, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/bkt", tmp_path / "bkt"
    server.shutdown()
    server.server_close()


def call(method: str, url: str, body: bytes | None = None, **headers: str):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={k.replace("_", "-"): v for k, v in headers.items()})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("ETag", "").strip('"'), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, "", err.read()


def test_a_write_with_a_stale_if_match_is_refused_and_changes_nothing(store):
    url, folder = store
    status, etag, _ = call("PUT", f"{url}/w.json", b'{"offset": 1}')
    assert status == 200 and etag
    assert call("PUT", f"{url}/w.json", b'{"offset": 2}', If_Match=etag)[0] == 200
    # a second writer that read the first version loses: 412, and the object is untouched
    assert call("PUT", f"{url}/w.json", b'{"offset": 3}', If_Match=etag)[0] == 412
    assert (folder / "w.json").read_bytes() == b'{"offset": 2}'
    # If-Match on an object that does not exist is refused too
    assert call("PUT", f"{url}/none.json", b"x", If_Match=etag)[0] == 412
    assert not (folder / "none.json").exists()


def test_create_only_writes_refuse_an_existing_object(store):
    url, folder = store
    assert call("PUT", f"{url}/r/1.batch", b"a", If_None_Match="*")[0] == 200
    assert call("PUT", f"{url}/r/1.batch", b"b", If_None_Match="*")[0] == 412
    assert (folder / "r" / "1.batch").read_bytes() == b"a"


def keys(body: bytes) -> tuple[list[str], list[str]]:
    root = ET.fromstring(body)
    return ([k.text for k in root.iter(f"{NS}Key")],
            [c.findtext(f"{NS}Prefix") for c in root.iter(f"{NS}CommonPrefixes")])


def test_listing_a_prefix_sees_only_its_folder_in_key_order_after_the_marker(store):
    url, _ = store
    for key in ("t/p0/records/002.batch", "t/p0/records/001.batch", "t/p0/records/010.batch",
                "t/p0/watermark.json", "t/p1/records/001.batch", "t/p0/recordsX.json"):
        assert call("PUT", f"{url}/{key}", b"x")[0] == 200
    status, _, body = call("GET", f"{url}?list-type=2&prefix=t/p0/records/")
    assert status == 200
    assert keys(body)[0] == ["t/p0/records/001.batch", "t/p0/records/002.batch",
                             "t/p0/records/010.batch"]
    _, _, body = call("GET", f"{url}?list-type=2&prefix=t/p0/records/"
                             "&start-after=t/p0/records/001.batch")
    assert keys(body)[0] == ["t/p0/records/002.batch", "t/p0/records/010.batch"]
    _, _, body = call("GET", f"{url}?list-type=2&prefix=t/p0/rec")   # a partial last name
    assert keys(body)[0] == ["t/p0/records/001.batch", "t/p0/records/002.batch",
                             "t/p0/records/010.batch", "t/p0/recordsX.json"]
    _, _, body = call("GET", f"{url}?list-type=2&prefix=t/&delimiter=/")
    assert keys(body) == ([], ["t/p0/", "t/p1/"])
    _, _, body = call("GET", f"{url}?list-type=2&prefix=t/p0/records/&max-keys=2")
    assert len(keys(body)[0]) == 2 and b"<IsTruncated>true</IsTruncated>" in body


def test_a_listing_orders_writes_by_their_modification_time_to_the_microsecond(store):
    from datetime import datetime

    url, _ = store
    for n in range(30):   # well within one second: the broker takes the last modified as the end
        assert call("PUT", f"{url}/p/{n:020d}.batch", b"x", If_None_Match="*")[0] == 200
    status, _, body = call("GET", f"{url}?list-type=2&prefix=p/")
    root = ET.fromstring(body)
    stamps = [datetime.fromisoformat(t.text.replace("Z", "+00:00"))
              for t in root.iter(f"{NS}LastModified")]
    assert status == 200 and len(stamps) == 30
    assert all(a < b for a, b in zip(stamps, stamps[1:]))   # strictly later, write after write
    # rewriting an object makes it the latest
    assert call("PUT", f"{url}/p/{0:020d}.batch", b"y")[0] == 200
    root = ET.fromstring(call("GET", f"{url}?list-type=2&prefix=p/")[2])
    latest = max(root.iter(f"{NS}Contents"), key=lambda c: c.find(f"{NS}LastModified").text)
    assert latest.find(f"{NS}Key").text == f"p/{0:020d}.batch"
