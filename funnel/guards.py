"""The lifecycle's guards, named after the business rules of the model: functions of a lead and
the model, compiled with the core (``funnel.accel``). The lifecycle's Machine names them as its
conditions (``funnel.lifecycle.TRANSITIONS``); ``funnel.moves.fire`` calls them."""

from __future__ import annotations

from datetime import datetime

from funnel.config import ScoringModel
from funnel.model import Lead


def has_fresh_signal(lead: Lead, wanted: list[str]) -> bool:
    """Whether one of ``wanted`` was seen since the lead was last recycled (ever, if never
    recycled)."""
    signals: dict[str, datetime] = lead.signals
    since = lead.recycled_at
    for s in wanted:
        seen = signals.get(s)
        if seen is not None and (since is None or seen > since):
            return True
    return False


def points_since(lead: Lead, since: datetime) -> float:
    return sum(r.points for r in lead.contributions if r.at is not None and r.at > since)


def meets_mql_threshold(lead: Lead, rules: ScoringModel) -> bool:
    mql = rules.lifecycle.mql
    # a recycled lead earns its MQL again: only points since it was recycled count
    recycled = lead.recycled_at
    interest = lead.interest_raw if recycled is None else points_since(lead, recycled)
    if interest >= mql.min_interest and lead.fit_score >= mql.min_fit:
        return True
    # a known person who showed high intent (since the last recycling), even before we knew
    # who it was: identifying after a download qualifies
    return bool(lead.traits.get("email")) and has_fresh_signal(lead, mql.or_signals)


def meets_sql_threshold(lead: Lead, rules: ScoringModel) -> bool:
    sql = rules.lifecycle.sql
    return (lead.temperature in sql.temperatures and lead.quality in sql.qualities
            and has_fresh_signal(lead, sql.signals))


def passes_second_filter(lead: Lead, rules: ScoringModel) -> bool:
    second = rules.lifecycle.second_filter
    if second.signals and has_fresh_signal(lead, second.signals):
        return True
    traits = lead.traits
    return bool(second.traits) and all(traits.get(t) not in (None, "") for t in second.traits)


def policy_is_auto(lead: Lead, rules: ScoringModel) -> bool:
    return rules.lifecycle.policy == "auto"


def policy_is_two_step(lead: Lead, rules: ScoringModel) -> bool:
    return rules.lifecycle.policy == "two_step"
