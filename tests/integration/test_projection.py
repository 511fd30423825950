"""The projection's writes are idempotent: an older snapshot never overwrites a newer row."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from funnel.config import load_model
from funnel.decide import new_lead
from streams.db.migrate import migrate
from streams.db.writer import Projection
from tests.integration.conftest import fresh_settings, query

T = datetime(2026, 11, 20, tzinfo=timezone.utc)


def snap(version: int, stage: str = "iql"):
    lead = new_lead("L-1", load_model()).model_copy(
        update={"version": version, "stage": stage, "last_activity_at": T})
    return lead.snapshot()


def test_a_lower_version_never_overwrites_a_higher_one(backends, tmp_path):
    settings = fresh_settings(backends, tmp_path)
    assert migrate(settings.dsn(), settings.db_schema) == [
        "001_leads.sql", "002_explanations.sql", "003_lifecycle.sql", "004_kpis.sql"]
    assert migrate(settings.dsn(), settings.db_schema) == []   # applied once

    async def scenario():
        p = Projection(settings.dsn(), settings.db_schema)
        await p.write([snap(5, "mql")])
        await p.write([snap(3, "iql")])                 # late, older: ignored
        await p.write([snap(7, "sql"), snap(6, "mql")])  # one batch: the newest wins
        await p.write([snap(7, "sql")])                 # a replay: no change
        await p.close()

    asyncio.run(scenario())
    assert query(settings, "SELECT stage, version FROM leads") == [("sql", 7)]
