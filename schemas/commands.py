"""Sales commands on ``funnel.sales-feedback``: what the sales tool tells the funnel."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.limits import LimitExceeded, check_amount, check_values
from schemas.wire import MAX_EVENT_BYTES, InvalidMessage, decode_object, describe, utc

Action = Literal["create", "accept", "reject", "disqualify", "won", "lost", "reopen"]


class SalesCommand(BaseModel):
    """An instruction from Sales (imperative). ``command_id`` is the idempotency key."""

    model_config = ConfigDict(frozen=True, extra="allow")

    command_id: str = Field(min_length=1, max_length=256)
    lead_id: str = Field(min_length=1, max_length=256)
    action: Action
    occurred_at: datetime
    actor: str | None = Field(None, max_length=256)
    reason: str | None = Field(None, max_length=2000)
    amount: float | None = Field(None, ge=0)
    currency: str | None = Field(None, max_length=8)
    traits: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return utc(v)


def parse_command(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> SalesCommand:
    """Validate the bytes of one ``funnel.sales-feedback`` message, or raise InvalidMessage."""
    data = decode_object(raw, max_bytes)
    try:
        check_values(data)
        check_amount(data.get("amount"), "amount")
    except LimitExceeded as exc:
        raise InvalidMessage("limit_exceeded", str(exc)) from None
    try:
        return SalesCommand.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage("invalid_command", describe(exc)) from None
