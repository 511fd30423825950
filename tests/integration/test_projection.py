"""The projection's writes are idempotent: an older snapshot never overwrites a newer row."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from decimal import Decimal

from funnel.config import load_model
from funnel.decide import new_lead
from streams.db.migrate import migrate
from streams.db.writer import (LEAD_COLUMNS, ORDER_COLUMNS, TRANSITION_COLUMNS, Projection,
                               lead_row, order_rows, transition_rows)
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


def test_every_column_of_every_row_is_the_snapshots_value_and_its_moves_and_orders_are_kept(
        backends, tmp_path):
    """The rows go through a temporary table (``COPY``, then one statement a table): each lead
    row holds its newest snapshot's values, column by column, and every stage change and order
    the snapshots carry is there once, written again or not."""
    from funnel.decide import process
    from funnel.lead_json import snapshot_json
    from funnel.model import Lead
    from schemas.lead import LeadSnapshot
    from tests.unit.helpers import simulated_history

    settings = fresh_settings(backends, tmp_path)
    migrate(settings.dsn(), settings.db_schema)
    model = load_model()
    leads: dict[str, Lead] = {}
    batches: list[list[LeadSnapshot]] = [[]]
    for m in simulated_history(150, seed=7, days=60)[0]:
        key = getattr(m, "userId", None) or getattr(m, "anonymousId", None) or m.lead_id
        lead, _ = process(leads.get(key) or new_lead(key, model), m, model)
        leads[key] = lead
        batches[-1].append(LeadSnapshot.model_validate_json(snapshot_json(lead)))
        if len(batches[-1]) == 300:
            batches.append([])

    async def scenario():
        p = Projection(settings.dsn(), settings.db_schema)
        for batch in batches:
            await p.write(batch)
        await p.write(batches[0])   # older snapshots again: nothing changes
        await p.close()

    asyncio.run(scenario())
    newest = {lead_id: LeadSnapshot.model_validate_json(snapshot_json(lead))
              for lead_id, lead in leads.items()}
    rows = {row[0]: row for row in query(settings, f"SELECT {', '.join(LEAD_COLUMNS)} FROM leads")}
    assert set(rows) == set(newest) and len(rows) > 100

    def same(got: object, want: object) -> bool:
        if isinstance(got, Decimal):        # numeric(14, 2)
            return got == Decimal(str(round(float(want), 2)))  # type: ignore[arg-type]
        if isinstance(got, (dict, list)):   # jsonb: the same JSON values
            return got == json.loads(want)  # type: ignore[arg-type]
        return got == want

    for lead_id, snapshot in newest.items():
        for column, got, want in zip(LEAD_COLUMNS, rows[lead_id], lead_row(snapshot)):
            assert same(got, want), (lead_id, column, got, want)
    # each stage change and order once, every column as its snapshot wrote it
    for table, columns, rows_of, least in (
            ("lead_transitions", TRANSITION_COLUMNS, transition_rows, 20),
            ("lead_orders", ORDER_COLUMNS, order_rows, 0)):
        want = {(r[0], r[1]): r for s in newest.values() for r in rows_of(s)}
        stored = query(settings, f"SELECT {', '.join(columns)} FROM {table}")
        assert len(stored) == len(want) > least, table
        for row in stored:
            expected = want[(row[0], row[1])]
            assert all(map(same, row, expected)), (table, row, expected)
