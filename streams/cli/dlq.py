"""The dead-letter topic as a tool: read the dead letters with their reasons, replay chosen ones.

A dead letter is the original message, unchanged, with headers ``error``, ``error_detail``,
``source_topic``, ``source_partition``, ``source_offset``. Replaying re-publishes the original
bytes under the original key to the topic it came from (after a fix: a corrected model, a
widened limit, a lead now in a stage that allows the command), with a header
``funnel_replayed_from`` naming the dead letter. Events and commands are deduplicated by
``messageId``/``command_id``, so replaying one twice counts once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from streams.topics import Topics
from streams.settings import Settings
from streams.clients import producer, read_all


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes | None
    error: str
    detail: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None

    @property
    def where(self) -> str:
        """``partition:offset`` on the DLQ: how a dead letter is chosen for replay."""
        return f"{self.partition}:{self.offset}"


def _header(headers: list[tuple[str, bytes]], name: str) -> str:
    for k, v in headers or []:
        if k == name:
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return ""


def _int(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def read_dead_letters(settings: Settings, timeout: float = 10.0) -> list[DeadLetter]:
    """Every dead letter on the DLQ, oldest first per partition."""
    dlq = Topics.from_settings(settings).dlq
    out = []
    for r in sorted(read_all(settings, dlq, timeout=timeout), key=lambda r: (r.timestamp,
                                                                             r.partition, r.offset)):
        h = r.headers
        out.append(DeadLetter(
            partition=r.partition, offset=r.offset,
            timestamp=datetime.fromtimestamp(r.timestamp / 1000, timezone.utc),
            key=r.key, value=r.value, error=_header(h, "error") or "(none)",
            detail=_header(h, "error_detail"), source_topic=_header(h, "source_topic"),
            source_partition=_int(_header(h, "source_partition")),
            source_offset=_int(_header(h, "source_offset"))))
    return out


def count_by_reason(letters: list[DeadLetter]) -> list[tuple[str, int]]:
    return Counter(d.error for d in letters).most_common()


def replayable_topics(settings: Settings) -> set[str]:
    t = Topics.from_settings(settings)
    return {t.events, t.feedback, t.identity}


def replay(settings: Settings, letters: list[DeadLetter]) -> int:
    """Re-publish ``letters`` to their source topics; returns how many. Letters from a topic
    that is not one of Funnel's inputs are refused (ValueError) before anything is sent."""
    allowed = replayable_topics(settings)
    foreign = [d for d in letters if d.source_topic not in allowed]
    if foreign:
        raise ValueError(f"dead letter {foreign[0].where} came from {foreign[0].source_topic!r}, "
                         f"which is not an input topic ({', '.join(sorted(allowed))})")
    dlq = Topics.from_settings(settings).dlq
    p = producer(settings)
    try:
        for d in letters:
            p.send(d.source_topic, key=d.key, value=d.value,
                   headers=[("funnel_replayed_from", f"{dlq}:{d.where}".encode())])
        p.flush()
    finally:
        p.close()
    return len(letters)
