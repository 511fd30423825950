"""Handoff and transition events: CloudEvents 1.0, structured JSON mode."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPES = {
    "mql": "funnel.lead.mql",
    "sql": "funnel.lead.sql",
    "customer": "funnel.lead.customer",
}
TRANSITIONED = "funnel.lead.transitioned"


class CloudEvent(BaseModel):
    """A CloudEvent envelope. ``id`` is ``lead_id:version``: re-sending keeps it."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = "funnel"
    type: str
    subject: str
    time: datetime
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
