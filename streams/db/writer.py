"""The PostgreSQL projection of ``funnel.leads``: batched, idempotent by ``version``.

A snapshot with a lower version than the row never overwrites it; stage changes are inserted
once per (lead_id, version). Tables come from ``streams.db.migrate``, applied at start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import orjson
import psycopg
from psycopg import sql

from schemas.costs import AdSpend, Spend
from schemas.lead import LeadSnapshot
from streams.db.migrate import connect_kwargs

log = logging.getLogger("funnel.projection")

# the leads table: every column, with how a snapshot fills it (the one definition: the upsert
# statement and the rows are both made from it; the table itself is in migrations/)
LEAD_ROW: dict[str, Callable[[LeadSnapshot], object]] = {
    "lead_id": lambda s: s.lead_id,
    **{c: (lambda s, c=c: getattr(s, c)) for c in (
        "stage", "interest_score", "temperature", "fit_score", "quality", "origin", "email",
        "company")},
    "first_touch_source": lambda s: s.first_touch.source,
    "first_touch_medium": lambda s: s.first_touch.medium,
    "first_touch_campaign": lambda s: s.first_touch.campaign,
    **{c: (lambda s, c=c: getattr(s, c)) for c in (
        "first_seen_at", "last_activity_at", "stage_entered_at", "mql_at", "sql_at",
        "customer_at", "orders", "revenue", "events_count", "model_name", "model_version")},
    "traits": lambda s: _json(s.traits),
    "reasons": lambda s: _reasons(s.reasons),
    "contributions": lambda s: _reasons(s.contributions),
    "fit_reasons": lambda s: _reasons(s.fit_reasons),
    **{c: (lambda s, c=c: getattr(s, c)) for c in (
        "interest_at", "sal_at", "recycled_at", "disqualified_at", "last_sales_action_at",
        "sla_breached_at", "merged_into")},
    **{c: (lambda s, c=c: _json(getattr(s, c))) for c in (
        "merged_from", "aliases", "revenue_by_currency")},
    "version": lambda s: s.version,
}
LEAD_COLUMNS = list(LEAD_ROW)
TRANSITION_COLUMNS = ["lead_id", "version", "from_stage", "to_stage", "trigger", "occurred_at",
                      "actor", "reason", "reasons"]


def _upsert_leads_sql() -> sql.Composed:
    cols = sql.SQL(", ").join(map(sql.Identifier, LEAD_COLUMNS))
    vals = sql.SQL(", ").join(sql.Placeholder() * len(LEAD_COLUMNS))
    sets = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in LEAD_COLUMNS[1:])
    return sql.SQL(
        "INSERT INTO leads ({cols}, updated_at) VALUES ({vals}, now()) "
        "ON CONFLICT (lead_id) DO UPDATE SET {sets}, updated_at = now() "
        "WHERE leads.version < EXCLUDED.version").format(cols=cols, vals=vals, sets=sets)


def _insert_transitions_sql() -> sql.Composed:
    cols = sql.SQL(", ").join(map(sql.Identifier, TRANSITION_COLUMNS))
    vals = sql.SQL(", ").join(sql.Placeholder() * len(TRANSITION_COLUMNS))
    return sql.SQL("INSERT INTO lead_transitions ({cols}) VALUES ({vals}) "
                   "ON CONFLICT (lead_id, version) DO NOTHING").format(cols=cols, vals=vals)


INSERT_ORDERS = ("INSERT INTO lead_orders (lead_id, order_id, occurred_at, amount, currency, "
                 "source) VALUES (%s, %s, %s, %s, %s, %s) "
                 "ON CONFLICT (lead_id, order_id) DO NOTHING")
UPSERT_SPEND = ("INSERT INTO campaign_costs (campaign, grain, period_start, currency, amount, "
                "source) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (campaign, grain, "
                "period_start, currency) DO UPDATE SET amount = EXCLUDED.amount, "
                "source = EXCLUDED.source, imported_at = now()")
UPSERT_LEADS = _upsert_leads_sql()
INSERT_TRANSITIONS = _insert_transitions_sql()


def _json(v: object) -> str:
    return orjson.dumps(v).decode()


def lead_row(s: LeadSnapshot) -> tuple:
    return tuple(value(s) for value in LEAD_ROW.values())


def _reasons(reasons: Iterable) -> str:
    return _json([r.model_dump(mode="json", exclude_none=True) for r in reasons])


def transition_rows(s: LeadSnapshot) -> Iterable[tuple]:
    for t in s.transitions:
        yield (t.lead_id, t.version, t.from_stage, t.to_stage, t.trigger, t.occurred_at, t.actor,
               t.reason, _json([r.model_dump(mode="json") for r in t.reasons]))


def order_rows(s: LeadSnapshot) -> Iterable[tuple]:
    for o in s.recent_orders:
        yield (s.lead_id, o.order_id, o.occurred_at, o.amount, o.currency, o.source)


def spend_row(s: Spend | AdSpend, source: str) -> tuple:
    return (s.campaign, s.grain, s.period_start, s.currency, s.amount, source)


def latest_per_lead(snapshots: Iterable[LeadSnapshot]) -> list[LeadSnapshot]:
    """Coalesce a batch: keep the highest version per lead."""
    best: dict[str, LeadSnapshot] = {}
    for s in snapshots:
        cur = best.get(s.lead_id)
        if cur is None or s.version > cur.version:
            best[s.lead_id] = s
    return list(best.values())


class Projection:
    """Writes batches of snapshots; reconnects and retries on transient errors."""

    def __init__(self, dsn: str, schema: str = "public") -> None:
        self.dsn, self.schema = dsn, schema
        self.conn: psycopg.AsyncConnection | None = None
        self.rows_written = 0

    async def _connection(self) -> psycopg.AsyncConnection:
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(self.dsn, **connect_kwargs(self.schema))
        return self.conn

    async def write(self, snapshots: Iterable[LeadSnapshot]) -> int:
        batch = latest_per_lead(snapshots)
        if not batch:
            return 0
        batch.sort(key=lambda s: s.lead_id)   # a stable lock order between workers
        leads = [lead_row(s) for s in batch]
        transitions = [row for s in batch for row in transition_rows(s)]
        orders = [row for s in batch for row in order_rows(s)]

        async def work(cur: psycopg.AsyncCursor) -> None:
            await cur.executemany(UPSERT_LEADS, leads)
            if transitions:
                await cur.executemany(INSERT_TRANSITIONS, transitions)
            if orders:
                await cur.executemany(INSERT_ORDERS, orders)

        await self._transaction(work, "projection")
        self.rows_written += len(leads)
        return len(leads)

    async def write_spends(self, spends: list[AdSpend]) -> None:
        """Upsert spend reports, in order (the latest report for a campaign/period/currency
        wins)."""
        rows = [spend_row(s, "event") for s in spends]

        async def work(cur: psycopg.AsyncCursor) -> None:
            await cur.executemany(UPSERT_SPEND, rows)

        await self._transaction(work, "spend")

    async def _transaction(self, work, what: str) -> None:  # type: ignore[no-untyped-def]
        """Run ``work(cursor)`` and commit; on a transient error reconnect and run it again."""
        delay = 0.5
        while True:
            try:
                conn = await self._connection()
                async with conn.cursor() as cur:
                    await work(cur)
                await conn.commit()
                return
            except (psycopg.OperationalError, psycopg.errors.DeadlockDetected) as exc:
                log.warning("%s write failed (%s); retrying in %.1fs", what, exc, delay)
                if self.conn is not None and not self.conn.closed:
                    await self.conn.close()
                self.conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
