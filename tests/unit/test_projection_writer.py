"""The projection's writer without a server: a connection whose temporary tables cannot be made
is closed, not left open behind the next try's."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from streams.db import writer
from streams.db.writer import STAGED, Projection


class FakeCursor:
    def __init__(self, conn: "FakeConnection") -> None:
        self.conn = conn

    async def __aenter__(self) -> "FakeCursor":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, statement: object) -> None:
        self.conn.executed.append(statement)
        if self.conn.fail:
            raise psycopg.errors.UndefinedTable('relation "leads" does not exist')


class FakeConnection:
    def __init__(self, fail: bool) -> None:
        self.fail, self.closed, self.committed = fail, False, False
        self.executed: list[object] = []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    async def commit(self) -> None:
        self.committed = True

    async def close(self) -> None:
        self.closed = True


def test_a_connection_whose_temporary_tables_fail_is_closed_and_a_good_one_kept(monkeypatch):
    made: list[FakeConnection] = []
    failing = [True, False]

    async def connect(dsn: str, **kw: object) -> FakeConnection:
        made.append(FakeConnection(failing.pop(0)))
        return made[-1]

    monkeypatch.setattr(writer.psycopg.AsyncConnection, "connect", connect)
    p = Projection("postgresql://nowhere/x")
    with pytest.raises(psycopg.errors.UndefinedTable):
        asyncio.run(p._connection())
    assert made[0].closed and p.conn is None       # not kept, not left open
    conn = asyncio.run(p._connection())
    assert conn is made[1] and not conn.closed and conn.committed
    assert conn.executed == [s.create for s in STAGED]   # each temporary table made once
    assert asyncio.run(p._connection()) is conn          # and kept for the next batches
