"""What a lead's change means to the outside: the records one decision sends.

Stage changes (``funnel.transitions``) and handoffs (``funnel.handoff.*``), an SLA alert, a
cooled temperature, and link requests to the ids the lead was known by (``funnel.identity``).
Written as JSON straight from the lead (the schemas' models define them and are what the
published JSON Schemas come from): what the events say of the lead is taken once per change.
"""

from __future__ import annotations

from funnel.config import ScoringModel
from funnel.history import item_time
from funnel.lead_json import facts, snapshot_json
from funnel.model import Lead, text_or_none
from schemas.dumps import (cooled_event, handoff_event, link_json, sla_breached_event,
                           transition_event)
from schemas.lead import TransitionRecord
from streams.topics import Topics
from streams.worker.metrics import Metrics
from streams.worker.outbox import Outbox


class Emitter:
    def __init__(self, outbox: Outbox, topics: Topics, model: ScoringModel,
                 metrics: Metrics) -> None:
        self.outbox, self.topics, self.metrics = outbox, topics, metrics
        self.half_life = model.interest.half_life_days
        self.sla_hours = model.lifecycle.sla.sql_hours

    def change(self, old: Lead, new: Lead, transitions: list[TransitionRecord],
               cooled: bool = False) -> None:
        breached = new.sla_breached_at is not None and new.sla_breached_at != old.sla_breached_at
        lead = facts(new) if (transitions or breached or cooled) else None
        for t in transitions:
            assert lead is not None
            self.outbox.cloudevent(self.topics.transitions, new.lead_id, transition_event(t, lead))
            self.metrics.inc(self.metrics.transitions, t.to_stage)
            handoff = handoff_event(t, lead)
            if handoff is not None:
                self.outbox.cloudevent(self.topics.handoff(t.to_stage), new.lead_id, handoff)
                self.metrics.inc(self.metrics.handoffs, t.to_stage)
        if breached:
            assert lead is not None
            self.outbox.cloudevent(self.topics.alerts, new.lead_id,
                                   sla_breached_event(lead, self.sla_hours))
            self.metrics.alerts.inc()
        if cooled and new.interest_at is not None:
            assert lead is not None
            self.outbox.cloudevent(self.topics.transitions, new.lead_id,
                                   cooled_event(lead, old.temperature))
        linked = [o for o in new.aliases if o not in old.aliases and o not in new.merged_from]
        if linked:
            last = new.history.last()   # the message that linked them
            for other in linked:
                self.identity(other, new.lead_id, link_json(
                    other, new.lead_id, text_or_none(new.traits.get("email")),
                    item_time(last) if last else new.last_activity_at,
                    "alias" if last and last["m"].get("type") == "alias" else "identify"))

    def identity(self, key: str, cause: str | None, message: bytes) -> None:
        """An identity protocol message (``schemas.identity``, as its ``encode()`` or
        ``schemas.dumps`` writes it) for the lead ``key``; ``cause``: the lead whose change
        sends it (None: a message passed on)."""
        self.outbox.send(self.topics.identity, key, message, lead=cause)

    def snapshot(self, lead: Lead) -> None:
        """The batch's snapshot of ``lead`` on ``funnel.leads`` (its JSON built directly: the
        same bytes as the model's, a third of the time)."""
        self.outbox.send(self.topics.leads, lead.lead_id, snapshot_json(lead, self.half_life))
