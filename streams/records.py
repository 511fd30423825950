"""Records as every writer of Funnel sends them, and the one shape of a dead letter (the worker,
its PostgreSQL sinks and the HTTP collector all dead-letter the same way)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLOUDEVENT_HEADERS = [("content-type", b"application/cloudevents+json")]
DETAIL_BYTES = 2000   # the error_detail header is cut to this many characters
# A dead letter carries the original bytes; one larger than these is cut (header ``truncated``
# says from how many bytes) so that it stays under a broker's 1 MB record limit: a message the
# broker took may be too large to be sent again with headers, and the worker must not die on it.
DLQ_VALUE_BYTES = 512 * 1024
DLQ_KEY_BYTES = 16 * 1024


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    # the lead whose change caused this record (the checkpoint journals it with the lead's
    # state); None for what deciding the same message again gives again (dead letters, …)
    lead: str | None = field(default=None, compare=False)
    # the checkpoint batch that first journaled it (0: not yet), when it is sent again
    journaled: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Source:
    """Where a message was read: what a dead letter names in its headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: float | None = None   # the broker's time of the message (seconds)

    @classmethod
    def of(cls, message: Any) -> "Source":
        """From a Faust/aiokafka message (or anything with the same attributes)."""
        return cls(message.topic, message.partition, message.offset, message.key, message.value,
                   tuple(message.headers or ()), getattr(message, "timestamp", None))


def dead_letter_record(dlq: str, source: Source, code: str, detail: str) -> Record:
    """The one shape of a dead letter: the original key and value (cut only past
    ``DLQ_KEY_BYTES``/``DLQ_VALUE_BYTES``), headers ``error``, ``error_detail``,
    ``source_topic``, ``source_partition``, ``source_offset`` (and ``truncated``)."""
    headers = [("error", code.encode()), ("error_detail", detail[:DETAIL_BYTES].encode()),
               ("source_topic", source.topic.encode()),
               ("source_partition", str(source.partition).encode()),
               ("source_offset", str(source.offset).encode())]
    key, value, cut = source.key, source.value, []
    if key is not None and len(key) > DLQ_KEY_BYTES:
        cut.append(f"key:{len(key)}")
        key = key[:DLQ_KEY_BYTES]
    if value is not None and len(value) > DLQ_VALUE_BYTES:
        cut.append(f"value:{len(value)}")
        value = value[:DLQ_VALUE_BYTES]
    if cut:
        headers.append(("truncated", ",".join(cut).encode()))
    return Record(dlq, key, value, headers)
