"""``funnel learn``'s core: from a history and the current model to a candidate model file, with
the current and the candidate judged side by side on the newest outcomes (the holdout).

The candidate is an ordinary model file: the current one with each supported rule's points set
to its learned weight on the points scale (see :mod:`funnel.fitting`), the rules the data could
not support kept at their current points and listed, the MQL bar (and the bands that hang on it)
chosen for a stated precision, and a ``learned_from`` block that says where it came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import yaml

from funnel.config import ModelError, ScoringModel, parse_model
from funnel.decide import Message
from funnel.fitting import (
    POINTS_PER_DOUBLING,
    POINTS_PER_LOGIT,
    LearnError,
    bars,
    check_enough,
    fit,
    intercept_for,
    judge,
    platt,
    split,
)
from funnel.learn import Outcome, Row, feature_names, rows


@dataclass(frozen=True)
class Learned:
    model: ScoringModel
    text: str                      # the candidate model file
    report: dict[str, Any]         # what ``--json`` writes
    holdout: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]   # name -> (score, p, y)


def learn(messages: Sequence[Message], current: ScoringModel, outcome: Outcome = "won", *,
          holdout: float = 0.3, precision: float = 0.5, since: datetime | None = None,
          until: datetime | None = None) -> Learned:
    data = [r for r in rows(messages, current, outcome)
            if (since is None or r.at >= since) and (until is None or r.at < until)]
    if not data:
        raise LearnError(f"no lead in the history has a known '{outcome}' outcome"
                         + (" in the period" if since or until else ""))
    names = feature_names(current)
    x = np.array([[r.features[n] for n in names] for r in data], dtype=float)
    y = np.array([r.label for r in data], dtype=int)
    cut = split(len(data), holdout)
    check_enough(y[:cut], y[cut:])
    fitted = fit(x[:cut], y[:cut], names)
    points = {n: float(round(fitted.points(n))) if n in fitted.weights else _current(current, n)
              for n in names}
    interest = {r.id for r in current.interest.rules}
    cand_i, cand_f = _parts(points, x, names, interest, None)
    cur_i, cur_f = _parts({n: _current(current, n) for n in names}, x, names, interest,
                          current.interest.cap)
    scale = (_ratio(cand_i[:cut], cur_i[:cut]), _ratio(cand_f[:cut], cur_f[:cut]))
    # every row passed today's MQL bar, so below it the data says nothing: the bar may rise
    floors = (current.lifecycle.mql.min_interest * scale[0], current.lifecycle.mql.min_fit * scale[1])
    bar = bars(cand_i[:cut], cand_f[:cut], y[:cut], precision, floors)
    cand, cur = cand_i + cand_f, cur_i + cur_f
    base = intercept_for(cand[:cut], y[:cut])
    scored = {"candidate": (cand, 1 / (1 + np.exp(-(base + cand / POINTS_PER_LOGIT)))),
              "current": (cur, platt(cur[:cut], y[:cut])(cur))}
    curves = {k: (s[cut:], p[cut:], y[cut:]) for k, (s, p) in scored.items()}
    fired = {n: int((x[:cut, j] > 0).sum()) for j, n in enumerate(names)}
    report = {
        "outcome": outcome,
        "period": {"from": data[0].at.isoformat(), "to": data[-1].at.isoformat()},
        "rows": len(data), "train_rows": cut, "holdout_rows": len(data) - cut,
        "holdout_from": data[cut].at.isoformat(), "positives": int(y.sum()),
        "holdout": {k: judge(*c).as_dict() for k, c in curves.items()},
        "weights": {n: {"log_odds": round(fitted.weights[n], 4), "points": points[n],
                        "current_points": _current(current, n), "rows_fired": fired[n]}
                    for n in fitted.names},
        "unsupported": fitted.unsupported, "tied": fitted.tied,
        "mql_bar": {"min_interest": bar[0], "min_fit": bar[1], "target_precision": precision,
                    "train_precision": round(bar[2], 4), "train_recall": round(bar[3], 4)},
        "points_per_doubling": POINTS_PER_DOUBLING,
        "probability": f"1 / (1 + exp(-({base:.4f} + points / {POINTS_PER_LOGIT:.4f})))",
        "method": f"L2 logistic regression (scikit-learn, C={fitted.regularisation}) on "
                  "standardised rule hits, trained on the older rows",
    }
    return _written(current, points, scale, report, data[-1].at, fitted.weights, fired, curves)


def _written(current: ScoringModel, points: dict[str, float], scale: tuple[float, float],
             report: dict, last: datetime, weights: dict[str, float], fired: dict[str, int],
             curves: dict) -> Learned:
    d = _candidate(current, points, scale, report, last)
    text = render(d, report, weights, fired)
    try:
        model = parse_model(text, "<candidate>")
    except ModelError as exc:   # a bug here, not bad data: say so plainly
        raise LearnError(f"the candidate model does not validate: {exc}") from None
    report["model"] = {"name": model.name, "version": model.version}
    return Learned(model, text, report, curves)


def _current(model: ScoringModel, name: str) -> float:
    for rule in [*model.interest.rules, *model.fit.rules]:
        if rule.id == name:
            return float(rule.points)
    raise KeyError(name)


def _parts(points: dict[str, float], x: np.ndarray, names: list[str], interest: set[str],
           cap: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Interest (undecayed, floored at 0, capped) and fit (floored at 0) points of each row."""
    w = np.array([points[n] for n in names])
    mask = np.array([n in interest for n in names])
    i = np.clip(x[:, mask] @ w[mask], 0, cap if cap is not None else math.inf)
    return i, np.maximum(x[:, ~mask] @ w[~mask], 0)


def _ratio(learned: np.ndarray, current: np.ndarray) -> float:
    """How much larger the learned scores run than the current ones (1 when either is flat)."""
    a, b = float(learned.mean()), float(current.mean())
    return a / b if a > 0 and b > 0 else 1.0


def _candidate(current: ScoringModel, points: dict[str, float], scale: tuple[float, float],
               report: dict, last: datetime) -> dict:
    d = current.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    bar_i, bar_f = report["mql_bar"]["min_interest"], report["mql_bar"]["min_fit"]
    d["name"] = f"{current.name}-learned"
    d["version"] = f"{current.version}-learned-{last:%Y%m%d}"
    for part in ("interest", "fit"):
        for rule in d[part]["rules"]:
            rule["points"] = points[rule["id"]]
    # the bands keep their places relative to the scores: scaled as the scores were
    t, q = current.interest, current.fit
    d["interest"]["bands"] = {"hot": round(t.bands.hot * scale[0], 1),
                              "warm": round(t.bands.warm * scale[0], 1)}
    d["interest"]["hysteresis"] = round(t.hysteresis * scale[0], 1)
    if t.cap is not None:
        d["interest"]["cap"] = round(max(t.cap * scale[0], bar_i), 1)
    d["fit"]["bands"] = {"high": round(q.bands.high * scale[1], 1),
                         "medium": round(q.bands.medium * scale[1], 1)}
    d["lifecycle"]["mql"]["min_interest"] = bar_i
    d["lifecycle"]["mql"]["min_fit"] = bar_f
    d["learned_from"] = {k: report[k] for k in ("outcome", "period", "rows", "train_rows",
                                                "holdout_rows", "positives", "method",
                                                "points_per_doubling", "probability",
                                                "unsupported")}
    d["learned_from"]["holdout"] = {k: {m: v[m] for m in ("auc", "lift_top_decile", "brier")}
                                    for k, v in report["holdout"].items()}
    d["learned_from"]["mql_bar"] = report["mql_bar"]
    return d


def render(d: dict, report: dict, weights: dict[str, float], fired: dict[str, int]) -> str:
    """The candidate as a model file a person reads: one rule a line, each with its evidence."""
    def flow(v: Any) -> str:
        text = yaml.safe_dump(v, default_flow_style=True, width=10_000, sort_keys=False)
        return text.removesuffix("\n...\n").strip()   # a scalar ends its document

    def rule_lines(rules: list[dict]) -> list[str]:
        out = []
        for rule in rules:
            n = rule["id"]
            why = (f"learned: {weights[n]:+.3f} log-odds, fired in {fired[n]} training rows"
                   if n in weights else f"kept: {report['unsupported'].get(n, 'not learned')}")
            out.append(f"    - {flow(rule)}   # {why}")
        return out

    h = report["holdout"]
    lines = [
        f"# Learned by `funnel learn` from {report['rows']} leads with a known "
        f"'{report['outcome']}' outcome",
        f"# ({report['period']['from'][:10]} .. {report['period']['to'][:10]}); "
        f"{POINTS_PER_DOUBLING:g} points double the odds.",
        f"# Holdout (the newest {report['holdout_rows']}): AUC {h['candidate']['auc']:.3f} "
        f"against {h['current']['auc']:.3f} for the current model.",
        "# Review it, `funnel backtest --model` it, then point FUNNEL_MODEL at it.",
        f"name: {flow(d['name'])}", f"version: {flow(d['version'])}", ""]
    for part in ("interest", "fit"):
        lines.append(f"{part}:")
        for k, v in d[part].items():
            if k != "rules":
                lines.append(f"  {k}: {flow(v)}")
        lines.append("  rules:")
        lines += rule_lines(d[part]["rules"])
        lines.append("")
    rest = {k: v for k, v in d.items() if k not in ("name", "version", "interest", "fit")}
    lines.append(yaml.safe_dump(rest, sort_keys=False, width=100).rstrip())
    return "\n".join(lines) + "\n"


__all__ = ["Learned", "LearnError", "Row", "learn"]
