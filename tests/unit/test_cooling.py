"""Cooling without new events: the periodic pass gives the core an explicit ``now``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from funnel.config import load_model
from funnel.decide import new_lead, process
from funnel.timers import cool, cools_at
from tests.unit.helpers import at, event

MODEL = load_model()


def hot_lead():
    lead = new_lead("u-1", MODEL)
    for i in range(3):
        lead, _ = process(lead, event(name="Demo Requested", when=at(i)), MODEL)
    return lead   # ~90 points, hot


def test_a_hot_lead_left_alone_becomes_warm_then_cold():
    lead = hot_lead()
    assert lead.temperature == "hot"
    assert cool(lead, at(days=1), MODEL) is lead          # still hot: nothing to write
    warm = cool(lead, at(days=30), MODEL)                  # ~45: warm
    assert warm.temperature == "warm" and warm.version == lead.version + 1
    assert warm.interest_raw == pytest.approx(lead.interest_raw / 2, rel=1e-3)
    cold = cool(warm, at(days=90), MODEL)
    assert cold.temperature == "cold"


def test_cools_at_is_the_moment_the_temperature_drops():
    lead = hot_lead()
    when = cools_at(lead, MODEL)
    assert when is not None
    assert cool(lead, when - timedelta(seconds=2), MODEL).temperature == "hot"
    assert cool(lead, when, MODEL).temperature == "warm"


def test_cooling_is_exact_whenever_it_runs():
    lead = hot_lead()
    once = cool(lead, at(days=40), MODEL)
    stepwise = cool(cool(lead, at(days=20), MODEL), at(days=40), MODEL)
    assert stepwise.interest_raw == pytest.approx(once.interest_raw, rel=1e-9)
    assert stepwise.temperature == once.temperature


def test_a_cold_lead_never_needs_cooling():
    lead, _ = process(new_lead("u-2", MODEL), event(name="Email Opened"), MODEL)
    assert lead.temperature == "cold" and cools_at(lead, MODEL) is None
