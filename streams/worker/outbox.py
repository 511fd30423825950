"""What a batch will send: records in order, and the one way to dead-letter a message.

The outbox only collects; the checkpoint sends (``streams.worker.checkpoint``). Counting
happens here, when a record is decided, so that every dead letter is counted by its reason.
"""

from __future__ import annotations

from streams.records import CLOUDEVENT_HEADERS, Record, Source, dead_letter_record
from streams.topics import Topics
from streams.worker.metrics import Metrics


class Outbox:
    def __init__(self, topics: Topics, metrics: Metrics) -> None:
        self.topics, self.metrics = topics, metrics
        self.records: list[Record] = []

    def __len__(self) -> int:
        return len(self.records)

    def take(self) -> list[Record]:
        """Everything collected so far, in order; the outbox is empty afterwards."""
        records, self.records = self.records, []
        return records

    def send(self, topic: str, key: str | bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None = None, lead: str | None = None) -> None:
        """``lead``: the lead whose change this record tells of (see ``Record.lead``)."""
        raw_key = key.encode() if isinstance(key, str) else key
        self.records.append(Record(topic, raw_key, value, list(headers or []), lead))

    def cloudevent(self, topic: str, key: str, event: bytes) -> None:
        """A CloudEvent (structured mode, its JSON) about the change of the lead ``key``."""
        self.send(topic, key, event, CLOUDEVENT_HEADERS, key)

    def dead_letter(self, source: Source, code: str, detail: str) -> None:
        """The original bytes on the DLQ with the reason and where they came from."""
        self.records.append(dead_letter_record(self.topics.dlq, source, code, detail))
        self.metrics.inc(self.metrics.dead_letters, code)

    def rekey(self, source: Source, key: str) -> None:
        """The message again on its own topic, under the key it should have had."""
        self.send(source.topic, key, source.value, list(source.headers))
