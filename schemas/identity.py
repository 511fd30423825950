"""The identity protocol on ``funnel.identity`` (internal; keyed by the lead it is for).

One person may reach the pipeline under several ids on different partitions. When a known lead
learns another id (``identify`` with an ``anonymousId``, or ``alias``):

1. ``Link`` goes to the other id: "merge into ``into``". Its partition marks it merged (or
   refuses: a different known person) and answers with
2. ``Absorb`` to ``into``: the other id's message history, which ``into`` replays.
3. ``Forward``: a message that arrives later under the merged id is sent on to ``into``.

``Absorb`` and ``Forward`` follow a chain of merges (an alias of an alias) at most ``MAX_HOPS``
times. ``from`` is a Python keyword: the field is ``from_`` with the wire name ``from``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter, ValidationError

from schemas.wire import InvalidMessage, describe

MAX_HOPS = 5   # identity forwards followed before giving up


class HistoryItem(BaseModel):
    """One message of a lead's history, as a merge replays it: an interaction event (``e``)
    or a sales command (``c``), compacted to what replaying it needs."""

    model_config = ConfigDict(frozen=True)

    k: Literal["e", "c"] = Field(description="e: interaction event; c: sales command")
    m: dict[str, Any] = Field(description="the message (InteractionEvent or SalesCommand)")


class _Identity(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, description="the id being merged")
    into: str = Field(min_length=1, description="the lead it is merged into")

    def encode(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class Link(_Identity):
    """Asks ``from`` (this message's key) to merge into the known lead ``into``."""

    kind: Literal["link"] = "link"
    email: str | None = Field(None, description="the known lead's email (a different known "
                                                "person's id is not merged)")
    at: datetime | None = Field(None, description="event time of the message that linked them")
    via: Literal["alias", "identify"] = "identify"

    @property
    def target(self) -> str:
        return self.from_


class Absorb(_Identity):
    """``from`` was merged into ``into`` (this message's key): its history, to replay."""

    kind: Literal["absorb"] = "absorb"
    at: datetime | None = None
    items: list[HistoryItem] = Field(default_factory=list)
    hops: int = Field(0, ge=0)

    @property
    def target(self) -> str:
        return self.into


class Forward(_Identity):
    """A message that arrived under the merged id ``from``, for ``into`` (this message's key)."""

    kind: Literal["forward"] = "forward"
    item: HistoryItem
    hops: int = Field(0, ge=0)

    @property
    def target(self) -> str:
        return self.into


IdentityMessage = Annotated[Union[Link, Absorb, Forward], Field(discriminator="kind")]


class IdentitySchema(RootModel[IdentityMessage]):
    """Internal: identity links between partitions (link, absorb, forward)."""


_ADAPTER: TypeAdapter[Link | Absorb | Forward] = TypeAdapter(IdentityMessage)


def parse_identity(raw: bytes | None) -> Link | Absorb | Forward:
    """Validate one ``funnel.identity`` message, or raise ``InvalidMessage``
    (``invalid_identity_message``)."""
    try:
        return _ADAPTER.validate_json(raw or b"")
    except ValidationError as exc:
        raise InvalidMessage("invalid_identity_message", describe(exc)) from None
