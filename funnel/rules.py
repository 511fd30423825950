"""What the model's rules test: a condition on one value, and what an interaction must look
like for an interest rule to score it (``funnel.config`` holds the rest of the model)."""

from __future__ import annotations

import fnmatch
import re
from functools import cached_property
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = Union[str, int, float, bool]


class Strict(BaseModel):
    """A part of the model file: unknown keys refused, frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(Strict):
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

    @cached_property
    def ranged(self) -> bool:
        """Whether a bound (``gt``, ``gte``, ``lt``, ``lte``) is set."""
        return any(b is not None for b in (self.gt, self.gte, self.lt, self.lte))

    @cached_property
    def contains_lower(self) -> list[str] | None:
        return None if self.contains_any is None else [w.lower() for w in self.contains_any]

    @cached_property
    def domains_lower(self) -> frozenset[str] | None:
        return None if self.domain_not_in is None else frozenset(
            d.lower() for d in self.domain_not_in)

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


class Match(Strict):
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

    @cached_property
    def kind_only(self) -> bool:
        """Only ``type`` and ``event`` are asked (``Interest.rules_for`` checks them)."""
        return self.path is None and not self.properties and not self.campaign \
            and not self.traits and self.known is None

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = dict(v)
            for key in ("type", "event", "path"):
                if key in v:
                    v[key] = _listify(v[key])
        return v


class InterestRule(Strict):
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


class FitRule(Strict):
    id: str = Field(min_length=1)
    points: float
    trait: str = Field(min_length=1)
    when: Condition
