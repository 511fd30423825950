"""The embedded broker's disk: an S3-compatible server over a folder (``localbucket``).

Tansu's ``s3://`` engine keeps every batch, watermark and committed offset as an object, and
updates its metadata optimistically: read with an ETag, write back ``If-Match`` that ETag, retry
on 412. ``localbucket`` honours ``If-None-Match: *`` but not ``If-Match``; without it two
concurrent writers of one watermark would both succeed and a batch could be lost. So every write
here takes one lock and checks ``If-Match`` against the stored object first.

Run as ``python -m streams.embedded.objectstore DIR --port PORT``; each bucket is a folder of DIR,
each object a file written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path

import localbucket

_writes = threading.Lock()
_last_ns = 0   # the modification time of the last write (ns, a whole µs); each write's is later


def _iso_timestamp(epoch: float) -> str:
    """localbucket's S3 date (``iso_timestamp``) to the microsecond, not the second. Tansu (0.6)
    answers a partition's end (ListOffsets latest) with the base offset + 1 of the batch object
    modified *last*, the first listed among equals: to the second, a partition written to several
    times in its last second reported an end inside it (1 for a partition of 25 one-record
    batches). Every write's modification time is a later whole microsecond (``_write_object``)."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Handler(localbucket.S3Handler):
    """localbucket's handler with ``If-Match`` on writes, and no line per request in the log."""

    # a response is written in two sends (headers, then body): with Nagle's algorithm on, the
    # body waits for the client's delayed ACK of the headers, 40 ms on Linux, for every request
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args) -> None:   # noqa: A002 - the stdlib's name
        pass

    def _write_object(self, bucket: str, key: str, write) -> str:
        global _last_ns
        with _writes:
            wanted = self.headers.get("If-Match")
            target = self._object_path(bucket, key)
            if wanted is not None:
                if not target.is_file() or not localbucket.etag_matches(
                        wanted, localbucket.object_etag(target)):
                    raise self._precondition_failed_error()
            etag = super()._write_object(bucket, key, write)
            # every write a later modification time than the one before it (_iso_timestamp)
            _last_ns = max(time.time_ns() // 1000 * 1000, _last_ns + 1000)
            os.utime(target, ns=(_last_ns, _last_ns))
            localbucket.remember_etag(target, etag)
            return etag

    def _list_entries(self, bucket_dir: Path, prefix: str, delimiter: str, marker: str,
                      marker_is_prefix: bool, max_keys: int):
        """One page of keys and common prefixes after the marker, as localbucket's, but walking
        only the folder the prefix names: localbucket walks the whole bucket for every listing,
        and the broker lists a partition's batches on every fetch (O(all batches) each time)."""
        folder = prefix.rpartition("/")[0]
        keys = sorted(_keys(bucket_dir / folder, f"{folder}/" if folder else ""),
                      key=lambda item: item[0].encode())
        contents: list[tuple[str, Path]] = []
        prefixes: list[str] = []
        last, truncated = "", False
        for key, path in keys:
            if not key.startswith(prefix):
                continue
            if marker and (key.encode() <= marker.encode()
                           or (marker_is_prefix and key.startswith(marker))):
                continue
            common = ""
            if delimiter and (at := key.find(delimiter, len(prefix))) >= 0:
                common = key[:at + len(delimiter)]
            if common and prefixes and prefixes[-1] == common:
                continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = max_keys > 0
                break
            if common:
                prefixes.append(common)
                last = "P:" + common
            else:
                contents.append((key, path))
                last = "K:" + key
        return contents, prefixes, truncated, last


def _keys(folder: Path, stem: str):
    """(key, path) of every stored object under ``folder``, keys starting with ``stem``."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _keys(Path(entry.path), f"{stem}{entry.name}/")
        elif not entry.name.startswith(localbucket.TEMP_PREFIX):
            yield f"{stem}{entry.name}", Path(entry.path)


def serve(root: Path, host: str, port: int) -> ThreadingHTTPServer:
    """A server over ``root`` (created if missing); call ``serve_forever`` on it."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    localbucket.iso_timestamp = _iso_timestamp   # every date the server writes
    Handler.data_root = root
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.embedded.objectstore")
    parser.add_argument("root", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    server = serve(args.root, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
