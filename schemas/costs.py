"""Campaign spend as data: the CSV that ``funnel costs import`` reads.

Columns (a header line, any order): ``campaign``, ``period``, ``amount``, ``currency``.
``period`` is a day (``2026-11-20``), an ISO week (``2026-W47``) or a month (``2026-11``).
A file with any bad line is refused as a whole, each problem named with its line number.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import InteractionEvent, parse_event
from schemas.wire import MAX_EVENT_BYTES, InvalidMessage

MAX_SPEND = Decimal("1e12")   # campaign_costs.amount is numeric(14, 2)

COLUMNS = ("campaign", "period", "amount", "currency")
AD_SPEND_EVENT = "Ad Spend Reported"
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class BadCosts(ValueError):
    """The problems of a costs file, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Spend:
    campaign: str
    grain: str          # day, week or month
    period_start: date
    amount: Decimal
    currency: str


def parse_period(text: str) -> tuple[str, date]:
    """``(grain, first day)`` of a day, ISO week or month; ValueError if it is none of those."""
    text = text.strip()
    try:
        if m := _DAY.match(text):
            return "day", date(int(m[1]), int(m[2]), int(m[3]))
        if m := _WEEK.match(text):
            return "week", date.fromisocalendar(int(m[1]), int(m[2]), 1)
        if m := _MONTH.match(text):
            return "month", date(int(m[1]), int(m[2]), 1)
    except ValueError as exc:
        raise ValueError(f"period {text!r}: {exc}") from None
    raise ValueError(f"period {text!r} is not a day (2026-11-20), an ISO week (2026-W47) "
                     "or a month (2026-11)")


def spend(campaign: Any, period: Any, amount: Any, currency: Any) -> Spend:
    """One spend row from its four values, or ValueError naming the value that is wrong."""
    name = str(campaign or "").strip()
    if not name:
        raise ValueError("campaign is empty")
    grain, start = parse_period(str(period or ""))
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise ValueError(f"amount {amount!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"amount {amount!r} must be a number ≥ 0")
    if value >= MAX_SPEND:
        raise ValueError(f"amount {amount!r} must be less than {MAX_SPEND}")
    code = str(currency or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError(f"currency {currency!r} is not a 3-letter code (ISO 4217)")
    return Spend(name, grain, start, value, code)


def parse_costs(text: str) -> list[Spend]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise BadCosts([f"line 1: missing column(s) {', '.join(missing)} "
                        f"(need {', '.join(COLUMNS)})"])
    reader.fieldnames = header
    rows, problems = [], []
    for n, row in enumerate(reader, start=2):
        try:
            rows.append(spend(*(row[c] for c in COLUMNS)))
        except ValueError as exc:
            problems.append(f"line {n}: {exc}")
    if problems:
        raise BadCosts(problems)
    return rows


class AdSpend(BaseModel):
    """Spend on ``funnel.costs`` (keyed by campaign), from an ``Ad Spend Reported`` event: the
    total for the campaign, period and currency (a later report replaces an earlier one)."""

    model_config = ConfigDict(frozen=True)

    campaign: str = Field(min_length=1, max_length=256)
    grain: Literal["day", "week", "month"]
    period_start: date
    amount: Decimal = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    message_id: str


def is_spend_report(event: InteractionEvent) -> bool:
    return event.type == "track" and event.event == AD_SPEND_EVENT


def spend_of(event: InteractionEvent) -> AdSpend | None:
    """The spend an ``Ad Spend Reported`` track event reports (``properties``: ``campaign``,
    ``period``, ``amount``, ``currency``); None for any other event. ValueError if it is one
    but its properties are wrong."""
    if not is_spend_report(event):
        return None
    p: dict[str, Any] = event.properties
    try:
        s = spend(*(p.get(c) for c in COLUMNS))
    except ValueError as exc:
        raise ValueError(f"properties.{exc}") from None
    return AdSpend(**asdict(s), message_id=event.messageId)


def parse_interaction(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES
                      ) -> InteractionEvent | AdSpend:
    """One ``funnel.events`` message: a lead's interaction, or a campaign's spend report (not a
    lead's). ``InvalidMessage`` as ``parse_event`` says, or ``invalid_spend``."""
    event = parse_event(raw, max_bytes)
    try:
        spent = spend_of(event)
    except ValueError as exc:
        raise InvalidMessage("invalid_spend", str(exc)) from None
    return event if spent is None else spent
