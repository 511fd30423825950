"""The scoring and lifecycle model: a YAML file owned by Marketing and Sales, not code.

``load_model(path)`` validates the whole file at load and raises :class:`ModelError` naming the
file, the field and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, model_validator

from funnel.rules import Condition, FitRule, InterestRule, Match, Strict, lowered

__all__ = ["Condition", "FitRule", "InterestRule", "Match", "ModelError", "ScoringModel",
           "default_model_text", "load_model", "lowered", "parse_model"]

class TemperatureBands(Strict):
    hot: float
    warm: float

    @model_validator(mode="after")
    def _ordered(self) -> "TemperatureBands":
        if self.hot <= self.warm:
            raise ValueError(f"hot ({self.hot}) must be above warm ({self.warm})")
        return self


class QualityBands(Strict):
    high: float
    medium: float

    @model_validator(mode="after")
    def _ordered(self) -> "QualityBands":
        if self.high <= self.medium:
            raise ValueError(f"high ({self.high}) must be above medium ({self.medium})")
        return self


class Interest(Strict):
    half_life_days: float | None = Field(None, gt=0)
    cap: float | None = Field(None, gt=0)
    hysteresis: float = Field(0.0, ge=0)
    bands: TemperatureBands
    rules: list[InterestRule]

    @cached_property
    def named_events(self) -> frozenset[str]:
        return frozenset(e for r in self.rules for e in (r.when.event or ()))

    @cached_property
    def kinds(self) -> dict[tuple[str, str | None], list[InterestRule]]:
        return {}

    def rules_for(self, type_: str, name: str | None) -> list[InterestRule]:
        """The rules whose ``type`` and ``event`` lists admit an event of this type and name,
        in the file's order; the other conditions are still to check. Computed once per kind
        (a name no rule lists counts as one kind, so the cache stays small)."""
        key = (type_, name if name in self.named_events else None)
        rules = self.kinds.get(key)
        if rules is None:
            rules = self.kinds[key] = [
                r for r in self.rules if (r.when.type is None or type_ in r.when.type)
                and (r.when.event is None or key[1] in r.when.event)]
        return rules

    @model_validator(mode="after")
    def _hysteresis_fits(self) -> "Interest":
        gap = min(self.bands.warm, self.bands.hot - self.bands.warm)
        if self.hysteresis >= gap:
            raise ValueError(f"hysteresis ({self.hysteresis}) must be below {gap}, the smallest "
                             "distance between bands, or a lead could never cool")
        return self


class Fit(Strict):
    bands: QualityBands
    rules: list[FitRule]

    @cached_property
    def seen(self) -> dict[tuple[int, type, Any], Any]:
        """What each rule (by its ``id``) gave for a value already seen (``funnel.scoring.fit``)."""
        return {}


class MqlRule(Strict):
    min_interest: float = Field(ge=0)
    min_fit: float = Field(ge=0)
    or_signals: list[str] = Field(default_factory=list)


class SqlRule(Strict):
    temperatures: list[Literal["hot", "warm", "cold"]] = Field(min_length=1)
    qualities: list[Literal["high", "medium", "low"]] = Field(min_length=1)
    signals: list[str] = Field(min_length=1)


class SecondFilter(Strict):
    traits: list[str] = Field(default_factory=list)
    signals: list[str] = Field(default_factory=list)


class Sla(Strict):
    """Service levels between Marketing and Sales, in event time. ``null`` turns one off."""

    sql_hours: float | None = Field(24.0, gt=0)   # Sales acts on an SQL within this, or an alert
    mql_days: float | None = Field(30.0, gt=0)    # an MQL nobody works within this is recycled


class Lifecycle(Strict):
    policy: Literal["auto", "sales_accept", "two_step"] = "auto"
    mql: MqlRule
    sql: SqlRule
    customer_signals: list[str] = Field(min_length=1)
    second_filter: SecondFilter = Field(default_factory=SecondFilter)
    sla: Sla = Field(default_factory=Sla)

    @cached_property
    def customer_set(self) -> frozenset[str]:
        return frozenset(self.customer_signals)


class ScoringModel(Strict):
    """The whole model file."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    interest: Interest
    fit: Fit
    lifecycle: Lifecycle
    referral_mediums: list[str] = Field(default_factory=lambda: ["referral"])

    @cached_property
    def referral_set(self) -> frozenset[str]:
        """``referral_mediums`` lower-cased, once."""
        return frozenset(m.lower() for m in self.referral_mediums)
    # provenance of a learned model (``funnel learn``): period, rows, outcome, holdout figures
    learned_from: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("version"), (int, float)):
            v = {**v, "version": str(v["version"])}
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ScoringModel":
        ids = [r.id for r in self.interest.rules] + [r.id for r in self.fit.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique, repeated: {', '.join(dupes)}")
        signals = {s for r in self.interest.rules for s in r.signals}
        lc = self.lifecycle
        wanted = {
            "lifecycle.mql.or_signals": lc.mql.or_signals,
            "lifecycle.sql.signals": lc.sql.signals,
            "lifecycle.customer_signals": lc.customer_signals,
            "lifecycle.second_filter.signals": lc.second_filter.signals,
        }
        for field, names in wanted.items():
            missing = [s for s in names if s not in signals]
            if missing:
                raise ValueError(
                    f"{field}: signal(s) {', '.join(missing)} are given by no interest rule, "
                    "so the threshold can never be met"
                )
        cap = self.interest.cap
        if cap is not None and lc.mql.min_interest > cap:
            raise ValueError(
                f"lifecycle.mql.min_interest ({lc.mql.min_interest}) is above interest.cap ({cap})"
            )
        if cap is not None and self.interest.bands.hot > cap and "hot" in lc.sql.temperatures \
                and lc.sql.temperatures == ["hot"]:
            raise ValueError(f"interest.bands.hot ({self.interest.bands.hot}) is above interest.cap ({cap})")
        return self


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and the field."""


DEFAULT_MODEL = "default.yaml"


def default_model_text() -> str:
    """The packaged default model file, as text (to copy and edit)."""
    return resources.files("funnel.models").joinpath(DEFAULT_MODEL).read_text("utf-8")


T = TypeVar("T")


def per_model(cache: dict[int, tuple[ScoringModel, Any]], model: ScoringModel,
              make: Callable[[ScoringModel], T]) -> T:
    """``make(model)``, made once per model object and kept in ``cache`` (by ``id``, checked
    against the object itself: an id is reused once its model is gone)."""
    entry = cache.get(id(model))
    if entry is None or entry[0] is not model:
        entry = cache[id(model)] = (model, make(model))
    return entry[1]


def load_model(path: str | Path | None = None) -> ScoringModel:
    """Load and validate a model file (the packaged default when ``path`` is None)."""
    if path is None:
        text = default_model_text()
        where = f"<packaged {DEFAULT_MODEL}>"
    else:
        where = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ModelError(f"{where}: cannot read the model file: {exc.strerror}") from None
    return parse_model(text, where)


def parse_model(text: str, where: str = "<model>") -> ScoringModel:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ModelError(f"{where}:{line} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{where}: the model file must be a mapping at the top level")
    try:
        return ScoringModel.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {loc or '(top level)'}: {msg}")
        raise ModelError("\n".join(lines)) from None
