"""The projection's tables: SQL migrations shipped inside the package (``streams/db/migrations``,
read with ``importlib.resources``, so a wheel installed anywhere creates its tables)."""

from __future__ import annotations

from importlib.resources import files

import psycopg
from psycopg import sql

MIGRATION_LOCK = 727274   # pg_advisory_xact_lock key: one migrator at a time


def migrations() -> list[tuple[str, str]]:
    """(file name, SQL) of every migration, in order."""
    folder = files("streams.db") / "migrations"
    found = [p for p in folder.iterdir() if p.name.endswith(".sql")]
    return [(p.name, p.read_text("utf-8")) for p in sorted(found, key=lambda p: p.name)]


def connect_kwargs(schema: str) -> dict:
    return {"options": f"-c search_path={schema}", "autocommit": False}


def migrate(dsn: str, schema: str = "public") -> list[str]:
    """Apply the SQL migrations not yet applied; returns the names applied now. Safe from many
    workers at once: one session-level advisory lock is taken before anything else (before
    ``CREATE SCHEMA IF NOT EXISTS`` too, which races on ``pg_namespace`` otherwise)."""
    applied_now = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            with conn.transaction():
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY "
                             "KEY, applied_at timestamptz NOT NULL DEFAULT now())")
                done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
                for name, text in migrations():
                    if name in done:
                        continue
                    conn.execute(text)  # type: ignore[call-overload]
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                    applied_now.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now


def reset(dsn: str, schema: str) -> None:
    """Drop the projection's schema (tests and a fresh demo)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
