"""Rows to learn from: one per lead whose outcome is known, with the features it had at the
decision moment.

The history is replayed through the current model (the same replay as ``funnel backtest``) to
find each lead's stages, its merged ids and its outcome. The features of a lead are then counted
from its own messages (and those of the anonymous ids merged into it) **up to the decision
moment** and no later: how often each interest rule scored (after the rule's frequency limits) and
which fit rules held on the traits known then. What happened after the moment — the call, the
order, the sales verdict — cannot leak into the row.

Outcomes:

- ``won``: among leads that reached SQL (the moment: their first SQL), 1 if they became a
  customer, 0 if Sales lost, rejected or disqualified them; still open: no row.
- ``sql``: among leads that reached MQL (the moment: their first MQL), 1 if they went on to SAL or
  SQL, 0 if they were recycled or disqualified first, or are still MQLs past the MQL expiry
  (``lifecycle.sla.mql_days`` before the end of the history); still open: no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from funnel.backtest import owner as owner_of
from funnel.backtest import replay
from funnel.config import ScoringModel
from funnel.history import Message, message_time
from funnel.model import Lead
from funnel.scoring import applicable_rules, count_rule, fit_rule_holds, record_hit
from schemas.commands import SalesCommand
from schemas.costs import is_spend_report
from schemas.events import InteractionEvent

Outcome = Literal["won", "sql"]
OUTCOMES: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {
    # outcome: (the decision stage, stages that count as 1, triggers that count as 0)
    "won": ("sql", frozenset({"customer"}), frozenset({"lost", "reject", "disqualify"})),
    "sql": ("mql", frozenset({"sal", "sql"}), frozenset({"expire", "reject", "disqualify"})),
}


@dataclass(frozen=True)
class Row:
    lead_id: str
    at: datetime                 # the decision moment
    label: int
    features: dict[str, float]   # rule id -> interest hits up to ``at`` / 1.0 if a fit rule held


def feature_names(model: ScoringModel) -> list[str]:
    return [r.id for r in model.interest.rules] + [r.id for r in model.fit.rules]


def label(lead: Lead, outcome: Outcome, expired_before: datetime | None = None
          ) -> tuple[datetime, int] | None:
    """(decision moment, 1/0) of a lead, or None when it never got there or is still open.
    ``expired_before``: a lead still waiting at the decision stage since before it counts as 0
    (for ``sql``: an MQL nobody worked past the MQL expiry, which a replay has no clock to fire)."""
    stage, good, bad = OUTCOMES[outcome]
    moment = None
    for t in lead.transitions:
        if moment is None:
            if t.to_stage == stage:
                moment = t.occurred_at
            continue
        if t.to_stage in good:
            return moment, 1
        if t.trigger in bad:
            return moment, 0
    if moment is not None and expired_before is not None and lead.stage == stage \
            and moment < expired_before:
        return moment, 0
    return None


def rows(messages: Sequence[Message], model: ScoringModel, outcome: Outcome) -> list[Row]:
    """One row per labelled lead, in order of decision moment (then lead id)."""
    leads = replay(messages, model).leads
    owner = {lead_id: owner_of(lead, leads.get).lead_id for lead_id, lead in leads.items()}
    mine: dict[str, list[Message]] = {}
    for m in messages:
        key = m.lead_key if isinstance(m, InteractionEvent) else m.lead_id
        if isinstance(m, InteractionEvent) and is_spend_report(m):
            continue
        mine.setdefault(owner.get(key, key), []).append(m)
    expired_before = None
    days = model.lifecycle.sla.mql_days
    if outcome == "sql" and days is not None and messages:
        expired_before = max(message_time(m) for m in messages) - timedelta(days=days)
    out = []
    for lead_id, lead in leads.items():
        if lead.merged_into is not None or \
                (found := label(lead, outcome, expired_before)) is None:
            continue
        at, y = found
        out.append(Row(lead_id, at, y, features(model, mine.get(lead_id, []), at)))
    return sorted(out, key=lambda r: (r.at, r.lead_id))


def features(model: ScoringModel, messages: Iterable[Message], until: datetime
             ) -> dict[str, float]:
    """Interest rule hits and fit rules holding, from ``messages`` up to ``until`` only."""
    timed = sorted(((message_time(m), i, m) for i, m in enumerate(messages)), key=lambda x: x[:2])
    traits: dict[str, Any] = {}
    days: dict[str, list[Any]] = {}
    hits: dict[str, list[datetime]] = {}
    out = {name: 0.0 for name in feature_names(model)}
    for at, _, m in timed:
        if at > until:
            break
        if isinstance(m, SalesCommand):
            traits.update(m.traits or {})
            continue
        traits.update(m.traits)
        day = at.date().isoformat()
        for rule in applicable_rules(model, m, traits, days, hits):
            out[rule.id] += 1
            days = count_rule(days, rule, day)
            hits = record_hit(hits, rule, at)
    for rule in model.fit.rules:
        out[rule.id] = 1.0 if fit_rule_holds(rule, traits) else 0.0
    return out
