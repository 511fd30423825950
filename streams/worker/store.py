"""The lead state this worker owns: a bounded cache of decoded leads over the table's bytes.

The table (``State``) holds every lead of this worker's partitions as bytes — on disk with the
``rocksdb`` store, in memory with ``memory``. A lead decided recently is also kept decoded, in a
cache of at most ``cache_size`` leads (least recently used go first); a lead changed since the
last checkpoint is *dirty* and stays in the cache until the checkpoint has written it. So the
worker's memory is bounded by the cache, not by the number of leads, and each lead is decoded
once per stay in the cache, not once per message.

A lead's message history (what only an identity merge reads) is not in its record: it lives in a
table of its own (``histories``), read with the lead and written only when it changed.

Records are encoded compactly and versioned (``encode``/``decode``): a leading ``\\x02``, the
number of the checkpoint batch that wrote it (8 bytes, see ``streams.worker.journal``), then the
lead's JSON without its default values. Records written before (``\\x01`` + JSON, plain JSON)
still decode.
Faust-free: a plain dict serves as the table in the unit tests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Protocol

from funnel.config import ScoringModel
from funnel.decide import new_lead
from funnel.history import History
from funnel.lead_json import record_json
from funnel.model import Lead

ENCODING_V1 = b"\x01"
ENCODING_V2 = b"\x02"
MARKER_PREFIX = "\x00"   # keys that are not leads (the checkpoint's markers and journal)


def encode(lead: Lead, batch: int = 0) -> bytes:
    return ENCODING_V2 + batch.to_bytes(8, "big") + record_json(lead)


def decode(raw: bytes) -> Lead:
    head = raw[:1]
    if head == ENCODING_V2:
        return Lead.model_validate_json(raw[9:])
    if head == ENCODING_V1:
        return Lead.model_validate_json(raw[1:])
    return Lead.model_validate_json(raw)   # a record from before the versioned encoding


def batch_of(raw: bytes) -> int:
    """The number of the checkpoint batch that wrote this record (0: unknown, older)."""
    return int.from_bytes(raw[1:9], "big") if raw[:1] == ENCODING_V2 else 0


class State(Protocol):
    """Where the leads' bytes live, by partition."""

    def get(self, partition: int, lead_id: str) -> bytes | None: ...

    def put(self, partition: int, lead_id: str, value: bytes) -> None: ...

    def put_all(self, partition: int, pairs: list[tuple[str, bytes]]) -> None:
        """``put`` each (lead id, value) of one partition, in one write where the store can."""

    def keys(self, partition: int) -> Iterable[str]: ...

    def recovered(self, lead_id: str, partition: int) -> None: ...


class MemoryState:
    """The leads' bytes in one mapping (Faust's ``memory://`` table data, or a dict)."""

    def __init__(self, data: MutableMapping[str, bytes]) -> None:
        self.data = data
        self.partition_of: dict[str, int] = {}

    def get(self, partition: int, lead_id: str) -> bytes | None:
        return self.data.get(lead_id)

    def put(self, partition: int, lead_id: str, value: bytes) -> None:
        self.data[lead_id] = value
        self.partition_of[lead_id] = partition

    def put_all(self, partition: int, pairs: list[tuple[str, bytes]]) -> None:
        for lead_id, value in pairs:
            self.put(partition, lead_id, value)

    def keys(self, partition: int) -> Iterator[str]:
        return (k for k, p in list(self.partition_of.items()) if p == partition)

    def recovered(self, lead_id: str, partition: int) -> None:
        self.partition_of[lead_id] = partition


# a decoded lead's memory, from its record's bytes and its history's (tracemalloc, simulated
# leads of 1 to 600 messages: within 13%): pydantic's objects take ~8 bytes a byte of JSON
LEAD_BASE, RECORD_FACTOR = 1_400, 8


def lead_memory(record_bytes: int, lead: Lead) -> int:
    """About how many bytes ``lead`` takes in memory, decoded (``record_bytes``: its record's)."""
    return LEAD_BASE + RECORD_FACTOR * record_bytes + len(lead.history.blob)


class Sizing:
    """A ``State`` that notes the size of each lead's record as it is written (the cache's
    bound in bytes: ``LeadStore.trim``)."""

    def __init__(self, state: State) -> None:
        self.inner = state
        self.written: dict[str, int] = {}   # lead id -> its last record's bytes, since noted

    def get(self, partition: int, lead_id: str) -> bytes | None:
        return self.inner.get(partition, lead_id)

    def put(self, partition: int, lead_id: str, value: bytes) -> None:
        self.written[lead_id] = len(value)
        self.inner.put(partition, lead_id, value)

    def put_all(self, partition: int, pairs: list[tuple[str, bytes]]) -> None:
        written = self.written
        for lead_id, value in pairs:
            written[lead_id] = len(value)
        self.inner.put_all(partition, pairs)

    def keys(self, partition: int) -> Iterable[str]:
        return self.inner.keys(partition)

    def recovered(self, lead_id: str, partition: int) -> None:
        self.inner.recovered(lead_id, partition)


class LeadStore:
    """``cache_size`` decoded leads at most, and ``cache_bytes`` of them (``lead_memory``): a
    few leads with long histories and big records take what thousands of small ones would.
    Its ``state`` is the table as given, noting the size of what is written to it: write the
    leads through it (the changelog does)."""

    def __init__(self, table: MutableMapping[str, bytes] | State, model: ScoringModel,
                 cache_size: int = 2_000, histories: State | None = None,
                 cache_bytes: int = 1 << 62) -> None:
        state: State = table if hasattr(table, "put") else MemoryState(table)  # type: ignore
        self.sizing = Sizing(state)
        self.state: State = self.sizing
        self.histories: State = histories or MemoryState({})   # lead id -> History bytes
        self.model, self.cache_size, self.cache_bytes = model, cache_size, cache_bytes
        self.cache: OrderedDict[str, tuple[int, Lead]] = OrderedDict()   # id -> (partition, lead)
        self.dirty: dict[str, int] = {}              # lead id -> partition: not yet written
        self.memory: dict[str, int] = {}             # lead id -> ``lead_memory``, when cached
        self.held = 0                                # the cached leads' memory in all

    def load(self, lead_id: str, partition: int) -> Lead:
        hit = self.cache.get(lead_id)
        if hit is not None and hit[0] == partition:
            self.cache.move_to_end(lead_id)
            return hit[1]
        raw = self.sizing.inner.get(partition, lead_id)
        if raw is None:
            return new_lead(lead_id, self.model)
        lead = decode(raw)
        if not lead.history.blob:   # (a record from before the split carries it)
            lead.history = History.decode(self.histories.get(partition, lead_id))
        return lead

    def keep(self, lead: Lead, partition: int) -> None:
        """``lead`` is the new state of its id: cached now, written at the next checkpoint."""
        self.cache[lead.lead_id] = (partition, lead)
        self.cache.move_to_end(lead.lead_id)
        self.dirty[lead.lead_id] = partition

    def recovered(self, lead_id: object, partition: int) -> None:
        """Table recovery read ``lead_id`` from the changelog of ``partition``."""
        if isinstance(lead_id, str) and not lead_id.startswith(MARKER_PREFIX):
            self.state.recovered(lead_id, partition)

    def keys(self, partition: int) -> Iterator[str]:
        """The ids of the leads of ``partition`` (for the timers after a restart)."""
        return (k for k in self.state.keys(partition) if not k.startswith(MARKER_PREFIX))

    def take_dirty(self) -> dict[str, tuple[int, Lead]]:
        """The changed leads (id -> (partition, state)); none are dirty afterwards."""
        dirty, self.dirty = self.dirty, {}
        return {lead_id: self.cache[lead_id] for lead_id in dirty}

    def trim(self) -> None:
        """Back to ``cache_size`` leads and ``cache_bytes``, least recently used out first;
        dirty ones stay. Called once their state is in the table (after the checkpoint), never
        before: a lead dropped earlier would be read back from older bytes."""
        self.measure()
        excess = len(self.cache) - self.cache_size
        if excess <= 0 and self.held <= self.cache_bytes:
            return
        held, victims = self.held, []
        for lead_id in self.cache:   # least recently used first, only as far as needed
            if excess <= 0 and held <= self.cache_bytes:
                break
            if lead_id not in self.dirty:
                victims.append(lead_id)
                held -= self.memory.get(lead_id, 0)
                excess -= 1
        for lead_id in victims:
            del self.cache[lead_id]
            self.held -= self.memory.pop(lead_id, 0)

    def measure(self) -> None:
        """The memory of the cached leads written since the last call, from their records."""
        written, self.sizing.written = self.sizing.written, {}
        cache, memory = self.cache, self.memory
        for lead_id, record_bytes in written.items():
            hit = cache.get(lead_id)
            if hit is not None:
                size = lead_memory(record_bytes, hit[1])
                self.held += size - memory.get(lead_id, 0)
                memory[lead_id] = size

    def forget(self, partitions: set[int]) -> None:
        """The partitions were revoked: their cached state goes (read again when they come
        back)."""
        for lead_id in [k for k, (p, _) in self.cache.items() if p in partitions]:
            del self.cache[lead_id]
            self.dirty.pop(lead_id, None)
            self.held -= self.memory.pop(lead_id, 0)
