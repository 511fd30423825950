"""Backtesting: replay history through the pure core with two models and compare.

The live pipeline applies the same ``process`` to the same messages in the same per-lead order,
so a replay gives the answer the pipeline would have given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from funnel.config import ScoringModel
from funnel.decide import CommandRefused, Message, new_lead, process
from funnel.model import Lead
from schemas.events import InteractionEvent


@dataclass
class Replay:
    leads: dict[str, Lead] = field(default_factory=dict)
    refused: int = 0
    handoffs: Counter = field(default_factory=Counter)

    def stages(self) -> Counter:
        return Counter(lead.stage for lead in self.leads.values())


def replay(messages: Iterable[Message], model: ScoringModel) -> Replay:
    out = Replay()
    for m in messages:
        lead_id = m.lead_key if isinstance(m, InteractionEvent) else m.lead_id
        lead = out.leads.get(lead_id) or new_lead(lead_id, model)
        try:
            lead, transitions = process(lead, m, model)
        except CommandRefused:
            out.refused += 1
            continue
        out.leads[lead_id] = lead
        out.handoffs.update(t.to_stage for t in transitions
                            if t.to_stage in ("mql", "sql", "customer"))
    return out


@dataclass(frozen=True)
class Change:
    lead_id: str
    current: str
    candidate: str


def changes(current: Replay, candidate: Replay) -> list[Change]:
    """Leads whose final stage differs between the two models."""
    out = []
    for lead_id in sorted(set(current.leads) | set(candidate.leads)):
        a, b = current.leads.get(lead_id), candidate.leads.get(lead_id)
        sa, sb = (a.stage if a else "-"), (b.stage if b else "-")
        if sa != sb:
            out.append(Change(lead_id, sa, sb))
    return out
