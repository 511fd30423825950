"""Interaction events on ``funnel.events``: Segment Spec messages.

``type`` is one of ``page``, ``track``, ``identify``, ``alias`` (scored by the default model) or
``screen``, ``group`` (accepted and stored). Unknown top-level fields are kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      ValidationError, model_validator)

from schemas.event_values import built
from schemas.limits import LimitExceeded, check_amount, check_limits
from schemas.wire import (MAX_EVENT_BYTES, InvalidMessage, decode_object, describe, empty_if_none,
                         id_text, utc)

__all__ = ["MAX_EVENT_BYTES", "InteractionEvent", "InvalidMessage", "parse_event", "validate_event"]

EventType = Literal["page", "track", "identify", "alias", "screen", "group"]
# validated by the compiled functions of ``schemas.wire``: numbers become text, "" none
Id = Annotated[str | None, BeforeValidator(id_text)]
Object = Annotated[dict[str, Any], BeforeValidator(empty_if_none)]   # null: an empty object


class InteractionEvent(BaseModel):
    """One Segment Spec message. Frozen: a fact that happened."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    messageId: str = Field(min_length=1, max_length=256)
    type: EventType
    timestamp: Annotated[datetime, AfterValidator(utc)]   # in UTC
    userId: Id = Field(None, max_length=256)
    anonymousId: Id = Field(None, max_length=256)
    event: str | None = Field(None, max_length=256)
    name: str | None = Field(None, max_length=256)
    previousId: Id = Field(None, max_length=256)
    properties: Object = Field(default_factory=dict)
    traits: Object = Field(default_factory=dict)
    context: Object = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> "InteractionEvent":
        if not self.userId and not self.anonymousId:
            raise ValueError("neither userId nor anonymousId is set")
        if self.type == "track" and not self.event:
            raise ValueError("a track message needs 'event'")
        if self.type == "alias" and not self.previousId:
            raise ValueError("an alias message needs 'previousId'")
        return self

    @property
    def lead_key(self) -> str:
        """The partition key and lead id: ``userId``, else ``anonymousId``."""
        return self.userId or self.anonymousId  # type: ignore[return-value]

    @property
    def path(self) -> str | None:
        props = self.properties
        path = props.get("path")
        if path is None:
            page = self.context.get("page") if isinstance(self.context.get("page"), dict) else {}
            path = page.get("path")
            url = props.get("url") or page.get("url")
            if path is None and isinstance(url, str) and "://" in url:
                rest = url.split("://", 1)[1]
                path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        return path.split("?", 1)[0] if isinstance(path, str) else None

    @property
    def campaign(self) -> dict[str, Any]:
        c = self.context.get("campaign")
        return c if isinstance(c, dict) else {}


def parse_event(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> InteractionEvent:
    """Validate the bytes of one ``funnel.events`` message, or raise :class:`InvalidMessage`."""
    data = decode_object(raw, max_bytes)
    return validate_event(data)


def validate_event(data: dict[str, Any]) -> InteractionEvent:
    """A decoded message as an :class:`InteractionEvent`, or :class:`InvalidMessage`: the input
    limits (``limit_exceeded``, naming the limit) first, then the Segment Spec shape (a common
    message's values set directly, ``schemas.event_values``; any other, pydantic's)."""
    try:
        check_limits(data)
        properties = data.get("properties")
        if isinstance(properties, dict):
            check_amount(properties.get("revenue"), "properties.revenue")
    except LimitExceeded as exc:
        raise InvalidMessage("limit_exceeded", str(exc)) from None
    event = built(InteractionEvent, data)
    if event is not None:
        return event
    try:
        return InteractionEvent.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage("invalid_event", describe(exc)) from None

