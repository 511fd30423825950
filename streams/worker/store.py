"""The lead state this worker owns: the live leads of its partitions, over the Table's bytes.

A lead decided since its partition was assigned is *live* (one pydantic object, authoritative);
any other is read from the table (``table[lead_id]``: the changelog's JSON) or is new. Changed
leads are *dirty* until the checkpoint writes them to the changelog. Faust-free: the table is
any mapping from lead id to bytes (a dict in the unit tests).
"""

from __future__ import annotations

from collections.abc import MutableMapping

from funnel.config import ScoringModel
from funnel.decide import new_lead
from funnel.model import Lead


class LeadStore:
    def __init__(self, table: MutableMapping[str, bytes], model: ScoringModel) -> None:
        self.table, self.model = table, model
        self.live: dict[int, dict[str, Lead]] = {}   # partition -> lead id -> state
        self.dirty: dict[str, int] = {}              # lead id -> partition: not yet in changelog
        self.partition_of: dict[str, int] = {}       # where each lead lives (for the timers)

    def load(self, lead_id: str, partition: int) -> Lead:
        live = self.live.get(partition, {}).get(lead_id)
        if live is not None:
            return live
        raw = self.table.get(lead_id)
        if raw is None:
            return new_lead(lead_id, self.model)
        return Lead.model_validate_json(raw)

    def keep(self, lead: Lead, partition: int) -> None:
        """``lead`` is the new state of its id: live now, written at the next checkpoint."""
        self.live.setdefault(partition, {})[lead.lead_id] = lead
        self.dirty[lead.lead_id] = partition
        self.partition_of[lead.lead_id] = partition

    def recovered(self, lead_id: object, partition: int) -> None:
        """Table recovery read ``lead_id`` from the changelog of ``partition``."""
        if isinstance(lead_id, str) and not lead_id.startswith("\x00"):
            self.partition_of[lead_id] = partition

    def take_dirty(self) -> dict[str, tuple[int, Lead]]:
        """The changed leads (id -> (partition, state)); none are dirty afterwards."""
        dirty, self.dirty = self.dirty, {}
        return {lead_id: (p, self.live[p][lead_id]) for lead_id, p in dirty.items()}

    def forget(self, partitions: set[int]) -> None:
        """The partitions were revoked: their live state goes (recovered when they come back)."""
        for p in partitions:
            self.live.pop(p, None)
