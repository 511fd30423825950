"""Backtesting: replay history through the pure core with two models and compare.

The live pipeline applies the same ``process`` to the same messages in the same per-lead order,
so a replay gives the answer the pipeline would have given. Identity links are followed at once
(the live pipeline does it through ``funnel.identity``, a moment later): scores and stages come
out the same, lead versions may differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from funnel.config import ScoringModel
from funnel.decide import CommandRefused, Message, new_lead, process
from funnel.history import compact, message_time
from funnel.merge import LinkRefused, accept_link, merge
from funnel.model import Lead
from schemas.costs import is_spend_report
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
    leads = out.leads

    def get(lead_id: str) -> Lead:
        return leads.get(lead_id) or new_lead(lead_id, model)

    def store(lead: Lead, transitions: list) -> None:
        leads[lead.lead_id] = lead
        out.handoffs.update(t.to_stage for t in transitions
                            if t.to_stage in ("mql", "sql", "customer"))

    for m in messages:
        if isinstance(m, InteractionEvent) and is_spend_report(m):
            continue   # campaign spend, not a lead's interaction (the pipeline routes it apart)
        lead_id = m.lead_key if isinstance(m, InteractionEvent) else m.lead_id
        lead = get(lead_id)
        try:
            if lead.merged_into is not None:   # a message under an id merged into another
                target = owner(lead, get)
                if isinstance(m, InteractionEvent):
                    new, transitions = merge(target, [compact(m)], None, m.timestamp, model)
                else:
                    new, transitions = process(target, m, model)
            else:
                new, transitions = process(lead, m, model)
        except CommandRefused:
            out.refused += 1
            continue
        if new is lead:
            continue
        store(new, transitions)
        old_aliases = set(lead.aliases) if new.lead_id == lead.lead_id else set()
        for other in new.aliases:
            if other in old_aliases or other in new.merged_from:
                continue
            via = "alias" if isinstance(m, InteractionEvent) and m.type == "alias" else "identify"
            try:
                marked, history = accept_link(get(other), new.lead_id, new.traits.get("email"), via)
            except LinkRefused:
                continue
            if marked is None:
                continue
            leads[other] = marked
            at = message_time(m)
            new, transitions = merge(leads[new.lead_id], history, other, at, model)
            store(new, transitions)
    return out


def owner(lead: Lead, get: Callable[[str], Lead | None]) -> Lead:
    """The lead ``lead`` was finally merged into (itself when never merged), following at most
    five hops; ``get`` finds a lead by id (None: the chain stops there)."""
    for _ in range(5):
        nxt = get(lead.merged_into) if lead.merged_into is not None else None
        if nxt is None:
            break
        lead = nxt
    return lead


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
