"""The checkpoint's journal: what a batch's changed leads will send, written *before* their new
state, so that a lead's state and its outputs are never apart after a crash.

Per changelog partition and batch (numbered per partition, ``n``):

- ``\\x00journal/<p>/<i>``: the batch's changed leads of partition ``p`` and, for each, the
  records its change caused (transitions, handoffs, alerts, identity messages), in parts of at
  most ``PART_BYTES``;
- each lead's record carries ``n`` (``store.encode``);
- ``\\x00sent/<p>``: ``n`` again, once the batch's outputs were all acknowledged.

At a start (or when a partition is assigned) ``resume`` reads them: when the last journal is
newer than the last ``sent`` mark, the batch's outputs may not all have gone out. Its leads whose
record carries a number above the mark have their new state on record, so their messages will
not be decided again (they are duplicates now): their journaled records (up to that number) are
sent again, unchanged, with the same ids — in the next batch, whose journal carries them on
(each record with the number of the batch that first journaled it) until a sent mark covers
them. The other leads never reached the table; their messages are decided again as if for the
first time, and nothing of theirs was sent (outputs go out only after the journal and the states
are acknowledged). Messages that change no state (dead letters, re-keyed messages, forwards) are
not journaled: deciding them again gives them again.
"""

from __future__ import annotations

import orjson

from streams.records import Record
from streams.worker.store import MARKER_PREFIX, State, batch_of

PART_BYTES = 512 * 1024


def journal_key(partition: int, part: int) -> str:
    return f"{MARKER_PREFIX}journal/{partition}/{part}"


def sent_key(partition: int) -> str:
    return f"{MARKER_PREFIX}sent/{partition}"


def _record(r: Record, n: int) -> list:
    return [r.topic, None if r.key is None else r.key.decode(), r.value.decode()  # type: ignore
            if r.value is not None else None, [[h, v.decode()] for h, v in r.headers],
            r.journaled or n]


def _unrecord(lead_id: str, raw: list) -> Record:
    topic, key, value, headers, journaled = raw
    return Record(topic, None if key is None else key.encode(),
                  None if value is None else value.encode(),
                  [(h, v.encode()) for h, v in headers], lead=lead_id, journaled=journaled)


class Journal:
    """Batch numbers per partition, the journal's records for a batch, and the resume."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.next: dict[int, int] = {}   # partition -> the number of its next batch

    def number(self, partition: int) -> int:
        """The number of the batch now being written for ``partition``."""
        n = self.next.get(partition)
        if n is None:
            self.resume(partition)
            n = self.next[partition]
        self.next[partition] = n + 1
        return n

    def entries(self, partition: int, n: int, leads: dict[str, list[Record]]
                ) -> list[tuple[str, bytes]]:
        """The journal of batch ``n`` of ``partition``: (key, value) records, in parts."""
        parts: list[dict[str, list]] = [{}]
        size = 0
        for lead_id, records in leads.items():
            encoded = [_record(r, n) for r in records]
            # the size to come, from the values (each is written once, in the final dumps)
            cost = len(lead_id) + sum(len(r.value or b"") + len(r.topic) + 64 for r in records)
            if parts[-1] and size + cost > PART_BYTES:
                parts.append({})
                size = 0
            parts[-1][lead_id] = encoded
            size += cost
        return [(journal_key(partition, i),
                 orjson.dumps({"n": n, "part": i, "parts": len(parts), "leads": part}))
                for i, part in enumerate(parts)]

    def sent(self, partition: int, n: int) -> tuple[str, bytes]:
        return sent_key(partition), str(n).encode()

    def resume(self, partition: int) -> dict[str, list[Record]]:
        """The leads of ``partition`` whose last batch may not have been sent, with the records
        to send again (their snapshots are made from their state). Sets the next number."""
        raw_sent = self.state.get(partition, sent_key(partition))
        sent = int(raw_sent) if raw_sent else 0
        first = self._part(partition, 0)
        n = first["n"] if first else 0
        self.next[partition] = max(n, sent) + 1
        if not first or n <= sent:
            return {}
        leads = dict(first["leads"])
        for i in range(1, first["parts"]):
            part = self._part(partition, i)
            if part is None or part["n"] != n:
                break   # a later part never reached the table: its leads were not written
            leads.update(part["leads"])
        out: dict[str, list[Record]] = {}
        for lead_id, records in leads.items():
            raw = self.state.get(partition, lead_id)
            written = batch_of(raw) if raw is not None else 0
            if sent < written <= n:   # on record, perhaps not sent: what it journaled up to then
                out[lead_id] = [_unrecord(lead_id, r) for r in records if r[4] <= written]
        return out

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.next.pop(p, None)

    def _part(self, partition: int, i: int) -> dict | None:
        raw = self.state.get(partition, journal_key(partition, i))
        return orjson.loads(raw) if raw else None
