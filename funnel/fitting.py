"""Fitting points to outcomes, and judging any score on a holdout.

The model is an L2-regularised logistic regression (scikit-learn): its log-odds are a sum of one
weight per rule, which is exactly the form of Funnel's points (a sum of points per rule hit), so
the learned weights become rule points without any approximation, and its probabilities are
calibrated by construction. A tree ensemble would rank a little better on some data and could
not be written back as points. Features are standardised before the fit so that the penalty
treats every rule alike, and the weights are turned back into per-hit units afterwards.

Points: ``POINTS_PER_DOUBLING`` points double the odds of the outcome (the scorecard
convention), so a lead's learned score reads as "20 more points: twice as likely".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

POINTS_PER_DOUBLING = 20.0
POINTS_PER_LOGIT = POINTS_PER_DOUBLING / math.log(2)
MIN_ROWS = 40          # labelled rows at the least, in the training part
MIN_EACH_CLASS = 10    # of each outcome, in the training part and (2 at the least) the holdout
MIN_SUPPORT = 10       # rows in which a rule must fire, with both outcomes among them


class LearnError(ValueError):
    """The data cannot support a model; the message says why."""


@dataclass(frozen=True)
class Fitted:
    names: list[str]                  # the supported features, in order
    weights: dict[str, float]         # log-odds per hit (interest) or per rule holding (fit)
    intercept: float
    unsupported: dict[str, str]       # feature -> why it got no weight
    regularisation: float
    tied: list[list[str]] = field(default_factory=list)   # fired in exactly the same rows

    def logit(self, x: np.ndarray) -> np.ndarray:
        w = np.array([self.weights[n] for n in self.names])
        return x @ w + self.intercept

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-self.logit(x)))

    def points(self, name: str) -> float:
        return self.weights.get(name, 0.0) * POINTS_PER_LOGIT


@dataclass(frozen=True)
class Judgement:
    """How well a score ranks and (as a probability) predicts one set of rows."""

    rows: int
    positives: int
    auc: float
    lift_top_decile: float
    brier: float
    calibration: list[dict[str, float]] = field(default_factory=list)   # by decile

    def as_dict(self) -> dict:
        return {"rows": self.rows, "positives": self.positives, "auc": round(self.auc, 4),
                "lift_top_decile": round(self.lift_top_decile, 3), "brier": round(self.brier, 4),
                "calibration": self.calibration}


def split(n: int, holdout: float) -> int:
    """Index of the first holdout row: the newest ``holdout`` share of rows sorted by time."""
    if not 0 < holdout < 1:
        raise LearnError(f"the holdout share must be between 0 and 1, not {holdout}")
    return n - max(1, round(n * holdout))


def check_enough(y_train: np.ndarray, y_test: np.ndarray) -> None:
    n, pos = len(y_train), int(y_train.sum())
    if n < MIN_ROWS:
        raise LearnError(f"only {n} labelled rows to train on (at least {MIN_ROWS} are needed): "
                         "widen the period or wait for more outcomes")
    if min(pos, n - pos) < MIN_EACH_CLASS:
        raise LearnError(f"the training rows have {pos} positive and {n - pos} negative outcomes;"
                         f" at least {MIN_EACH_CLASS} of each are needed")
    tpos = int(y_test.sum())
    if min(tpos, len(y_test) - tpos) < 2:
        raise LearnError(f"the holdout has {tpos} positive and {len(y_test) - tpos} negative "
                         "outcomes: it cannot judge a model; use a larger --holdout or more data")


def supported(x: np.ndarray, y: np.ndarray, names: Sequence[str]) -> tuple[list[int], dict]:
    """Columns with enough evidence; the others with the reason."""
    keep, why = [], {}
    for j, name in enumerate(names):
        on = x[:, j] > 0
        if on.sum() < MIN_SUPPORT:
            why[name] = f"fired in {int(on.sum())} rows (fewer than {MIN_SUPPORT})"
        elif on.all():
            why[name] = "fired in every row: nothing to compare it with"
        elif y[on].min() == y[on].max():
            why[name] = f"every row where it fired had the same outcome ({int(y[on][0])})"
        else:
            keep.append(j)
    return keep, why


def fit(x: np.ndarray, y: np.ndarray, names: Sequence[str], c: float = 1.0) -> Fitted:
    """A regularised logistic regression on the supported columns of ``x``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    keep, why = supported(x, y, names)
    if not keep:
        raise LearnError("no rule fired often enough, with both outcomes, to learn a weight")
    xs = x[:, keep]
    scaler = StandardScaler().fit(xs)
    lr = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(xs), y)
    w = lr.coef_[0] / scaler.scale_
    intercept = float(lr.intercept_[0] - (lr.coef_[0] * scaler.mean_ / scaler.scale_).sum())
    kept = [names[j] for j in keep]
    return Fitted(kept, {n: float(v) for n, v in zip(kept, w)}, intercept, why, c,
                  _tied(xs, kept))


def _tied(x: np.ndarray, names: list[str]) -> list[list[str]]:
    """Groups of rules with the same counts in every row: the data gives their sum, and the
    penalty shares it equally between them."""
    groups: dict[bytes, list[str]] = {}
    for j, name in enumerate(names):
        groups.setdefault(x[:, j].tobytes(), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def intercept_for(score: np.ndarray, y: np.ndarray) -> float:
    """The intercept that makes ``sigmoid(b + score / POINTS_PER_LOGIT)`` fit ``y`` best, the
    slope held at the points scale (maximum likelihood): a lead's probability read
    straight off its points, whatever rules the data could not weigh add to every score."""
    z = score / POINTS_PER_LOGIT
    lo, hi = -60.0, 60.0          # the log-loss's slope in b rises with b: bisect its zero
    for _ in range(80):
        b = (lo + hi) / 2
        if (1 / (1 + np.exp(-np.clip(b + z, -60, 60))) - y).sum() > 0:
            hi = b
        else:
            lo = b
    return float((lo + hi) / 2)


def platt(score_train: np.ndarray, y_train: np.ndarray):
    """A probability for any score (the current model's points), fitted on the training rows."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=2000).fit(score_train.reshape(-1, 1), y_train)
    return lambda s: lr.predict_proba(np.asarray(s, float).reshape(-1, 1))[:, 1]


def judge(score: np.ndarray, probability: np.ndarray, y: np.ndarray) -> Judgement:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    order = np.argsort(-score, kind="stable")
    top = order[:max(1, math.ceil(len(y) / 10))]
    base = y.mean()
    deciles = []
    by_p = np.argsort(probability, kind="stable")
    for part in np.array_split(by_p, min(10, len(y))):
        deciles.append({"predicted": round(float(probability[part].mean()), 4),
                        "observed": round(float(y[part].mean()), 4), "rows": int(len(part))})
    return Judgement(len(y), int(y.sum()), float(roc_auc_score(y, score)),
                     float(y[top].mean() / base) if base else 0.0,
                     float(brier_score_loss(y, probability)), deciles)


def bars(interest: np.ndarray, fit_: np.ndarray, y: np.ndarray, precision: float,
         floors: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float, float, float]:
    """(interest bar, fit bar, precision, recall): among the pairs of bars (not below
    ``floors``) whose leads above both reach ``precision``, the one that keeps the most
    positives; when none does, the most precise one."""
    def candidates(values: np.ndarray, floor: float) -> list[float]:
        qs = np.quantile(values, np.linspace(0, 0.95, 20)).round(1)
        return sorted({round(float(floor), 1), *(float(q) for q in qs if q >= floor)})

    cands_i, cands_f = candidates(interest, floors[0]), candidates(fit_, floors[1])
    best, fallback = None, None
    total = max(int(y.sum()), 1)
    for bi in cands_i:
        for bf in cands_f:
            chosen = (interest >= bi) & (fit_ >= bf)
            if chosen.sum() == 0:
                continue
            p, r = float(y[chosen].mean()), float(y[chosen].sum() / total)
            if p >= precision and (best is None or (r, -bi - bf) > (best[3], -best[0] - best[1])):
                best = (bi, bf, p, r)
            if fallback is None or (p, r) > (fallback[2], fallback[3]):
                fallback = (bi, bf, p, r)
    assert fallback is not None
    return best or fallback
