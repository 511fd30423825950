"""Scoring: interaction rules -> interest points (with decay, caps, frequency limits); traits ->
fit points; both -> temperature and quality bands. Every point carries its reason."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from funnel.config import Condition, FitRule, InterestRule, Match, ScoringModel
from funnel.config import lowered
from schemas.events import InteractionEvent
from schemas.lead import Quality, Reason, Temperature

SECONDS_PER_DAY = 86400.0


def number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.replace(",", "").strip())
        except ValueError:
            return None
    return None


def holds(cond: Condition, value: Any) -> bool:
    """Whether ``value`` satisfies every operator of ``cond`` (strings compare case-blind)."""
    present = value is not None and value != ""
    if cond.present is not None and cond.present != present:
        return False
    if not present:
        return cond.present is False or (cond.ne is not None)
    if cond.eq is not None and lowered(value) != lowered(cond.eq):
        n = number(value)
        if n is None or number(cond.eq) != n:
            return False
    if cond.ne is not None and lowered(value) == lowered(cond.ne):
        return False
    # lists, not sets: a value may be unhashable (a trait sent as a list or an object)
    if cond.in_lower is not None and lowered(value) not in cond.in_lower:
        return False
    if cond.not_in_lower is not None and lowered(value) in cond.not_in_lower:
        return False
    if cond.ranged:
        n = number(value)
        if n is None:
            return False
        if cond.gt is not None and not n > cond.gt:
            return False
        if cond.gte is not None and not n >= cond.gte:
            return False
        if cond.lt is not None and not n < cond.lt:
            return False
        if cond.lte is not None and not n <= cond.lte:
            return False
    words = cond.contains_lower
    if words is not None:
        text = str(value).lower()
        for word in words:
            if word in text:
                break
        else:
            return False
    domains = cond.domains_lower
    if domains is not None:
        text = str(value).lower()
        if "@" not in text or text.rsplit("@", 1)[1] in domains:
            return False
    return True


def matches(match: Match, event: InteractionEvent, traits: dict[str, Any]) -> bool:
    """Whether ``event`` meets ``match`` beyond its type and name, which ``Interest.rules_for``
    selected the rule by."""
    if match.path_pattern is not None:
        path = event.path
        if path is None or not match.path_pattern.match(path):
            return False
    for key, cond in match.properties.items():
        if not holds(cond, event.properties.get(key)):
            return False
    campaign = event.campaign
    for key, cond in match.campaign.items():
        if not holds(cond, campaign.get(key)):
            return False
    for key, cond in match.traits.items():
        if not holds(cond, traits.get(key)):
            return False
    if match.known is not None and match.known != bool(traits.get("email")):
        return False
    return True


def decay_factor(half_life_days: float | None, seconds: float) -> float:
    """How much of a score remains after ``seconds`` of event time."""
    if not half_life_days or seconds <= 0:
        return 1.0
    return math.pow(0.5, seconds / (half_life_days * SECONDS_PER_DAY))


def decayed(model: ScoringModel, score: float, since: datetime | None, now: datetime) -> float:
    if since is None:
        return score
    return score * decay_factor(model.interest.half_life_days, (now - since).total_seconds())


def applicable_rules(
    model: ScoringModel,
    event: InteractionEvent,
    traits: dict[str, Any],
    rule_days: dict[str, list[Any]],
    rule_hits: dict[str, list[datetime]] | None = None,
    day: str | None = None,
) -> list[InterestRule]:
    """The interest rules that score this event, after frequency limits (``day``: the event's
    date in ISO form, when the caller has it)."""
    day = day or event.timestamp.date().isoformat()
    out = []
    for rule in model.interest.rules_for(event.type, event.event or event.name):
        if not rule.when.kind_only and not matches(rule.when, event, traits):
            continue
        seen = rule_days.get(rule.id)
        if rule.once and seen is not None:
            continue
        if rule.max_per_day is not None and seen is not None and seen[0] == day \
                and seen[1] >= rule.max_per_day:
            continue
        if rule.max_in_window is not None and rule.window_days is not None:
            start = event.timestamp - timedelta(days=rule.window_days)
            hits = (rule_hits or {}).get(rule.id, [])
            if sum(1 for h in hits if start < h <= event.timestamp) >= rule.max_in_window:
                continue
        out.append(rule)
    return out


def record_hit(rule_hits: dict[str, list[datetime]], rule: InterestRule, at: datetime
               ) -> dict[str, list[datetime]]:
    """Remember when a windowed rule scored (the latest ``max_in_window`` times)."""
    if rule.max_in_window is None:
        return rule_hits
    hits = sorted([*rule_hits.get(rule.id, []), at])[-rule.max_in_window:]
    return {**rule_hits, rule.id: hits}


def count_rule(rule_days: dict[str, list[Any]], rule: InterestRule, day: str) -> dict[str, list[Any]]:
    seen = rule_days.get(rule.id)
    count = seen[1] + 1 if seen is not None and seen[0] == day else 1
    return {**rule_days, rule.id: [day, count]}


def add_points(model: ScoringModel, score: float, anchor: datetime | None, at: datetime,
               points: float) -> tuple[float, datetime]:
    """Add ``points`` earned at ``at`` to a score anchored at ``anchor``; returns the new
    (score, anchor). Out-of-order events are decayed to the anchor, so the result is exact.

    The raw score is not floored here: it may go below zero (an unsubscribe weighs on), and it is
    read as ``max(raw, 0)`` (:func:`shown`). Flooring at each step made the score depend on the
    order the events arrived in (an unsubscribe older than a page view already taken wiped the
    page view out; taken first, it did not), so a replay and the live pipeline, or two arrival
    orders across partitions, could disagree. A sum of decayed points does not depend on order."""
    if anchor is None or at >= anchor:
        base = decayed(model, score, anchor, at)
        new, new_anchor = base + points, at
    else:
        new, new_anchor = score + points * decay_factor(
            model.interest.half_life_days, (anchor - at).total_seconds()), anchor
    cap = model.interest.cap
    if cap is not None:
        new = min(new, cap)
    return new, new_anchor


def shown(raw: float) -> float:
    """The interest score as shown and compared: the raw sum, never below zero."""
    return max(raw, 0.0)


TOP_REASONS = 5   # interest contributions (and fit reasons) a stage change and a snapshot name


def top_reasons(contributions: list[Reason], fit_reasons: list[Reason]) -> list[Reason]:
    """The largest interest contributions (by size; in their order among equals), then the
    fit reasons."""
    interest = sorted(contributions, key=lambda r: -abs(r.points))[:TOP_REASONS]
    return interest + fit_reasons[:TOP_REASONS]


def decayed_values(contributions: list[Reason], interest_raw: float,
                   interest_at: datetime | None, half_life_days: float | None
                   ) -> tuple[list[float], float | None]:
    """Each contribution's value decayed to the score's time (``interest_at``), and the
    adjustment that makes them add up to the score as shown (None: they already do)."""
    values = []
    for r in contributions:
        age = (interest_at - r.at).total_seconds() if interest_at and r.at else 0.0
        factor = 0.5 ** (max(age, 0.0) / (half_life_days * 86400.0)) if half_life_days else 1.0
        values.append(round(r.points * factor, 6))
    rest = round(shown(interest_raw) - sum(values), 6)
    return values, (rest if abs(rest) > 1e-6 else None)


_RANK = {"cold": 0, "warm": 1, "hot": 2}


def temperature(model: ScoringModel, score: float, previous: Temperature | None = None
                ) -> Temperature:
    """The band of ``score``. With hysteresis, a lead falls out of its band only when it is more
    than ``hysteresis`` points below the band's threshold, so it does not flip at every event."""
    bands, h = model.interest.bands, model.interest.hysteresis
    raw: Temperature = "hot" if score >= bands.hot else "warm" if score >= bands.warm else "cold"
    if previous is None or not h or _RANK[raw] >= _RANK[previous]:
        return raw
    if previous == "hot" and score >= bands.hot - h:
        return "hot"
    if score >= bands.warm - h:
        return "warm"
    return "cold"


FIT_SEEN = 50_000   # values remembered per model before it starts again


def fit(model: ScoringModel, traits: dict[str, Any]) -> tuple[float, list[Reason]]:
    """Fit score from traits (does not decay) and the rules that gave it.

    What a rule gives for a scalar value (its reason, or nothing) is remembered: most leads
    share their industries, sizes and countries, and this ran at every change of traits."""
    total = 0.0
    reasons = []
    seen = model.fit.seen
    if len(seen) > FIT_SEEN:
        seen.clear()
    for rule in model.fit.rules:
        value = traits.get(rule.trait)
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool or value is None:
            key = (id(rule), kind, value)   # the type too: True == 1 == 1.0 as keys
            reason = seen.get(key, seen)
            if reason is seen:
                reason = seen[key] = _fit_reason(rule, value)
        else:
            reason = _fit_reason(rule, value)
        if reason is not None:
            total += rule.points
            reasons.append(reason)
    return max(total, 0.0), reasons


def _fit_reason(rule: FitRule, value: Any) -> Reason | None:
    if not holds(rule.when, value):
        return None
    return Reason(rule=rule.id, points=rule.points, kind="fit",
                  detail=f"{rule.trait}={value!s:.60}")


def fit_rule_holds(rule: FitRule, traits: dict[str, Any]) -> bool:
    return holds(rule.when, traits.get(rule.trait))


def quality(model: ScoringModel, score: float) -> Quality:
    bands = model.fit.bands
    if score >= bands.high:
        return "high"
    if score >= bands.medium:
        return "medium"
    return "low"
