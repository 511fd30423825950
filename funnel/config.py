"""The scoring and lifecycle model: a YAML file owned by Marketing and Sales, not code.

``load_model(path)`` validates the whole file at load and raises :class:`ModelError` naming the
file, the field and what is wrong.
"""

from __future__ import annotations

import fnmatch
import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Scalar = Union[str, int, float, bool]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """A test on one value. Several operators in one condition must all hold."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    not_in: list[Scalar] | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    contains_any: list[str] | None = None
    domain_not_in: list[str] | None = None
    present: bool | None = None

    @cached_property
    def in_lower(self) -> list[Any] | None:
        """``in`` with its strings lower-cased, once (strings compare case-blind)."""
        return None if self.in_ is None else [lowered(x) for x in self.in_]

    @cached_property
    def not_in_lower(self) -> list[Any] | None:
        return None if self.not_in is None else [lowered(x) for x in self.not_in]

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_eq(cls, v: Any) -> Any:
        return {"eq": v} if isinstance(v, (str, int, float, bool)) else v

    @model_validator(mode="after")
    def _not_empty(self) -> "Condition":
        if not self.model_fields_set:
            raise ValueError("a condition needs at least one operator")
        lo = self.gte if self.gte is not None else self.gt
        hi = self.lte if self.lte is not None else self.lt
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"impossible range: lower bound {lo} is above upper bound {hi}")
        return self


def lowered(v: Any) -> Any:
    """A value as conditions compare it: strings case-blind, anything else as it is."""
    return v.lower() if isinstance(v, str) else v


def _listify(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class Match(_Strict):
    """What an interaction must look like for a rule to score it."""

    type: list[str] | None = None
    event: list[str] | None = None
    path: list[str] | None = None
    properties: dict[str, Condition] = Field(default_factory=dict)
    campaign: dict[str, Condition] = Field(default_factory=dict)
    traits: dict[str, Condition] = Field(default_factory=dict)
    known: bool | None = None

    @cached_property
    def path_pattern(self) -> re.Pattern[str] | None:
        """The path globs as one regular expression (``fnmatchcase`` semantics), once."""
        if self.path is None:
            return None
        return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in self.path))

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = dict(v)
            for key in ("type", "event", "path"):
                if key in v:
                    v[key] = _listify(v[key])
        return v


class InterestRule(_Strict):
    id: str = Field(min_length=1)
    points: float
    when: Match
    max_per_day: int | None = Field(None, ge=1)
    max_in_window: int | None = Field(None, ge=1)
    window_days: float | None = Field(None, gt=0)
    once: bool = False
    signals: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _window_pair(self) -> "InterestRule":
        if (self.max_in_window is None) != (self.window_days is None):
            raise ValueError("max_in_window and window_days go together")
        return self


class FitRule(_Strict):
    id: str = Field(min_length=1)
    points: float
    trait: str = Field(min_length=1)
    when: Condition


class TemperatureBands(_Strict):
    hot: float
    warm: float

    @model_validator(mode="after")
    def _ordered(self) -> "TemperatureBands":
        if self.hot <= self.warm:
            raise ValueError(f"hot ({self.hot}) must be above warm ({self.warm})")
        return self


class QualityBands(_Strict):
    high: float
    medium: float

    @model_validator(mode="after")
    def _ordered(self) -> "QualityBands":
        if self.high <= self.medium:
            raise ValueError(f"high ({self.high}) must be above medium ({self.medium})")
        return self


class Interest(_Strict):
    half_life_days: float | None = Field(None, gt=0)
    cap: float | None = Field(None, gt=0)
    hysteresis: float = Field(0.0, ge=0)
    bands: TemperatureBands
    rules: list[InterestRule]

    @model_validator(mode="after")
    def _hysteresis_fits(self) -> "Interest":
        gap = min(self.bands.warm, self.bands.hot - self.bands.warm)
        if self.hysteresis >= gap:
            raise ValueError(f"hysteresis ({self.hysteresis}) must be below {gap}, the smallest "
                             "distance between bands, or a lead could never cool")
        return self


class Fit(_Strict):
    bands: QualityBands
    rules: list[FitRule]


class MqlRule(_Strict):
    min_interest: float = Field(ge=0)
    min_fit: float = Field(ge=0)
    or_signals: list[str] = Field(default_factory=list)


class SqlRule(_Strict):
    temperatures: list[Literal["hot", "warm", "cold"]] = Field(min_length=1)
    qualities: list[Literal["high", "medium", "low"]] = Field(min_length=1)
    signals: list[str] = Field(min_length=1)


class SecondFilter(_Strict):
    traits: list[str] = Field(default_factory=list)
    signals: list[str] = Field(default_factory=list)


class Sla(_Strict):
    """Service levels between Marketing and Sales, in event time. ``null`` turns one off."""

    sql_hours: float | None = Field(24.0, gt=0)   # Sales acts on an SQL within this, or an alert
    mql_days: float | None = Field(30.0, gt=0)    # an MQL nobody works within this is recycled


class Lifecycle(_Strict):
    policy: Literal["auto", "sales_accept", "two_step"] = "auto"
    mql: MqlRule
    sql: SqlRule
    customer_signals: list[str] = Field(min_length=1)
    second_filter: SecondFilter = Field(default_factory=SecondFilter)
    sla: Sla = Field(default_factory=Sla)


class ScoringModel(_Strict):
    """The whole model file."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    interest: Interest
    fit: Fit
    lifecycle: Lifecycle
    referral_mediums: list[str] = Field(default_factory=lambda: ["referral"])
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
