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


def test_a_row_postgresql_refuses_is_set_aside_and_the_rest_of_the_batch_is_written(
        backends, tmp_path):
    settings = fresh_settings(backends, tmp_path)
    migrate(settings.dsn(), settings.db_schema)
    model = load_model()

    def lead(lead_id: str, **update):
        return new_lead(lead_id, model).model_copy(
            update={"version": 1, "last_activity_at": T, **update}).snapshot()

    good = lead("L-good", traits={"company": "Acme"})
    nul = lead("L-nul", traits={"company": "Ac\x00me"})          # text cannot hold U+0000
    rich = lead("L-rich", revenue=5e12, orders=1)                 # numeric(14, 2) overflows
    refused: list[tuple[str, str]] = []

    async def on_refused(snapshot, exc):
        refused.append((snapshot.lead_id, type(exc).__name__))

    async def scenario():
        p = Projection(settings.dsn(), settings.db_schema)
        written = await p.write([nul, good, rich], on_refused)
        again = await p.write([lead("L-next")], on_refused)      # the connection still works
        await p.close()
        return written, again

    assert asyncio.run(scenario()) == (1, 1)
    assert sorted(lead_id for lead_id, _ in refused) == ["L-nul", "L-rich"]
    # psycopg refuses the NUL itself (DataError); the server refuses the overflow
    assert dict(refused) == {"L-nul": "DataError", "L-rich": "NumericValueOutOfRange"}
    assert query(settings, "SELECT lead_id FROM leads ORDER BY lead_id") == [("L-good",),
                                                                             ("L-next",)]


def test_many_workers_migrating_one_new_schema_at_once_all_succeed_and_apply_it_once(
        backends, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    settings = fresh_settings(backends, tmp_path)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: migrate(settings.dsn(), settings.db_schema), range(6)))
    applied = [names for names in results if names]
    assert len(applied) == 1 and applied[0][0] == "001_leads.sql"
    assert query(settings, "SELECT count(*) FROM schema_migrations") == [(len(applied[0]),)]
