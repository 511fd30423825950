"""The funnel lifecycle, defined as data: one shared ``transitions`` Machine, guards named after
the business rules of the model (``funnel.guards``), evaluated on the lead being processed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transitions import Machine

from funnel import guards
from funnel.config import ScoringModel, per_model
from funnel.model import Lead
from schemas.lead import STAGES as ALL_STAGES

Guard = Callable[[Lead, ScoringModel], bool]

STAGES = list(ALL_STAGES)
BEFORE_CUSTOMER = ["iql", "mql", "sal", "sql", "recycled"]

TRANSITIONS: list[dict[str, Any]] = [
    # automatic moves, driven by scores and signals
    {"trigger": "qualify_marketing", "source": ["iql", "recycled"], "dest": "mql",
     "conditions": "meets_mql_threshold"},
    {"trigger": "qualify_sales", "source": "mql", "dest": "sql",
     "conditions": ["policy_is_auto", "meets_sql_threshold"]},
    {"trigger": "pass_second_filter", "source": "sal", "dest": "sql",
     "conditions": "passes_second_filter"},
    {"trigger": "purchase", "source": BEFORE_CUSTOMER + ["disqualified"], "dest": "customer"},
    # timers (event time): an MQL nobody works is recycled by policy
    {"trigger": "expire", "source": "mql", "dest": "recycled"},
    # sales commands
    {"trigger": "create", "source": "iql", "dest": "sql"},
    {"trigger": "accept", "source": "mql", "dest": "sal", "conditions": "policy_is_two_step"},
    {"trigger": "accept", "source": "mql", "dest": "sql", "unless": "policy_is_two_step"},
    {"trigger": "accept", "source": "sql", "dest": None},       # acknowledges the handoff
    {"trigger": "reject", "source": ["mql", "sal", "sql"], "dest": "recycled"},
    {"trigger": "disqualify", "source": BEFORE_CUSTOMER, "dest": "disqualified"},
    {"trigger": "won", "source": ["mql", "sal", "sql"], "dest": "customer"},
    {"trigger": "won", "source": "customer", "dest": None},     # a repeat order
    {"trigger": "lost", "source": ["sal", "sql"], "dest": "recycled"},
    {"trigger": "reopen", "source": ["recycled", "disqualified"], "dest": "sql"},
]

AUTOMATIC = ("qualify_marketing", "qualify_sales", "pass_second_filter")
COMMANDS = ("create", "accept", "reject", "disqualify", "won", "lost", "reopen")


class Refused(Exception):
    """A move the lead's stage (or the policy) does not allow."""


class Lifecycle:
    """One Machine per model, shared by every lead.

    The Machine is the definition: its moves are read off it once (each trigger's transitions
    out of each stage, with their guards) and evaluated by ``funnel.moves.fire`` on the lead
    directly, in the Machine's order and with its meaning (the first transition whose guards
    hold is taken; ``dest`` None is an internal move). Firing the library's own trigger per move
    (event data, callbacks, state objects) cost a third of the core's time, for the same
    answer; the guards are compiled functions of the lead and the model (``funnel.guards``)."""

    def __init__(self, rules: ScoringModel) -> None:
        self.machine = Machine(model=None, states=STAGES, transitions=TRANSITIONS,
                               initial="iql", auto_transitions=False, send_event=False)
        self._allowed = {stage: self.machine.get_triggers(stage) for stage in STAGES}
        # the automatic triggers that have a move out of each stage, in ``AUTOMATIC``'s order
        self.automatic = {stage: tuple(t for t in AUTOMATIC if t in self._allowed[stage])
                          for stage in STAGES}
        # each trigger's moves out of each stage: (dest, [(guard, what it must say)]), the
        # guards being ``funnel.guards``'s functions of the same names (``funnel.moves.fire``)
        self.moves: dict[tuple[str, str], list[tuple[str | None, list[tuple[Guard, bool]]]]] = {
            (trigger, stage): [(t.dest, [(getattr(guards, str(c.func)), bool(c.target))
                                         for c in t.conditions]) for t in moves]
            for trigger, event in self.machine.events.items()
            for stage, moves in event.transitions.items()}

    def allowed(self, stage: str) -> list[str]:
        """The triggers that have a move out of ``stage`` (guards not evaluated)."""
        return self._allowed[stage]


_LIFECYCLES: dict[int, tuple[ScoringModel, Lifecycle]] = {}


def lifecycle_for(rules: ScoringModel) -> Lifecycle:
    return per_model(_LIFECYCLES, rules, Lifecycle)
