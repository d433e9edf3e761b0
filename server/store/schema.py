"""Applies schema.sql, idempotently, on SQLite or PostgreSQL.

Tables first, then the columns added to a table after it first shipped (CREATE TABLE IF NOT
EXISTS does not add them to an existing database), then the rows a new unique index would
refuse are made to fit (INDEX_CLEANUPS), then indexes, which may use those columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema.sql"

# Any constant works; it only has to be the same in every process applying the schema.
_PG_SCHEMA_LOCK = 0x636861745F736368


@dataclass(frozen=True)
class AddedColumn:
    """A column schema.sql gained after its table shipped, and how existing rows get it."""

    table: str
    column: str
    ddl: str
    backfill: str | None = None


ADDED_COLUMNS = (
    AddedColumn(
        "contacts",
        "identifier_verified",
        "BOOLEAN NOT NULL DEFAULT FALSE",
        # Verified where every identity of the contact was HMAC-verified: a contact that an
        # unverified claim created and a verified visitor was later moved into (the takeover
        # of issue 13) has an unverified one and stays unverified. One per identifier: the
        # oldest, as the unique index requires.
        backfill="""
            UPDATE contacts SET identifier_verified = TRUE
            WHERE id IN (
                SELECT MIN(c.id) FROM contacts c
                WHERE c.identifier IS NOT NULL
                  AND EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.contact_id = c.id)
                  AND NOT EXISTS (
                      SELECT 1 FROM contact_inboxes ci
                      WHERE ci.contact_id = c.id AND NOT ci.hmac_verified)
                GROUP BY c.account_id, c.identifier)
        """,
    ),
)


@dataclass(frozen=True)
class IndexCleanup:
    """Rows an existing database may hold that a unique index schema.sql gained later would
    refuse: `sql` makes them fit, once, before the index is first created."""

    index: str
    sql: str


INDEX_CLEANUPS = (
    # Before messages_sender_echo, a retried message was written twice: the retries keep
    # their content and lose their echo_id (the first of each keeps it).
    IndexCleanup(
        "messages_sender_echo",
        """
            UPDATE messages SET echo_id = NULL
            WHERE echo_id IS NOT NULL AND id NOT IN (
                SELECT MIN(id) FROM messages WHERE echo_id IS NOT NULL
                GROUP BY sender_type, sender_id, echo_id)
        """,
    ),
)


def statements(dialect: str, source: str | None = None) -> list[str]:
    """The DDL statements of schema.sql, spelled for `dialect` ("sqlite" or "postgresql")."""
    sql = SCHEMA_PATH.read_text() if source is None else source
    sql = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    if dialect == "sqlite":
        sql = sql.replace("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY")
    return [stmt.strip() for stmt in re.split(r";\s*(?:\n|$)", sql) if stmt.strip()]


async def _columns(conn: AsyncConnection, table: str) -> set[str]:
    if conn.dialect.name == "sqlite":
        rows = await conn.exec_driver_sql(f"PRAGMA table_info({table})")
        return {row[1] for row in rows}
    rows = await conn.execute(
        text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = :table"
        ),
        {"table": table},
    )
    return {row[0] for row in rows}


async def _add_missing_columns(conn: AsyncConnection) -> None:
    for added in ADDED_COLUMNS:
        if added.column in await _columns(conn, added.table):
            continue
        await conn.exec_driver_sql(
            f"ALTER TABLE {added.table} ADD COLUMN {added.column} {added.ddl}"
        )
        if added.backfill:
            await conn.exec_driver_sql(added.backfill)


async def _has_index(conn: AsyncConnection, name: str) -> bool:
    if conn.dialect.name == "sqlite":
        query = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = :name"
    else:
        query = "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = :name"
    return (await conn.execute(text(query), {"name": name})).first() is not None


async def _clean_for_new_indexes(conn: AsyncConnection) -> None:
    for cleanup in INDEX_CLEANUPS:
        if not await _has_index(conn, cleanup.index):
            await conn.exec_driver_sql(cleanup.sql)


async def apply(conn: AsyncConnection) -> None:
    """Create what is missing. Several processes may start at once: PostgreSQL serializes
    them with an advisory lock, SQLite with its write lock (BEGIN IMMEDIATE)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_SCHEMA_LOCK})")
    ddl = statements(dialect)
    for stmt in ddl:
        if stmt.upper().startswith("CREATE TABLE"):
            await conn.exec_driver_sql(stmt)
    await _add_missing_columns(conn)
    await _clean_for_new_indexes(conn)
    for stmt in ddl:
        if not stmt.upper().startswith("CREATE TABLE"):
            await conn.exec_driver_sql(stmt)
