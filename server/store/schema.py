"""Applies schema.sql, idempotently, on SQLite or PostgreSQL.

Tables first, then the columns added to a table after it first shipped (CREATE TABLE IF NOT
EXISTS does not add them to an existing database), then the rows a new unique index would
refuse are made to fit (INDEX_CLEANUPS), then indexes, which may use those columns, then the
indexes schema.sql no longer has are dropped (DROPPED_INDEXES).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema.sql"

# Any constant works; it only has to be the same in every process applying the schema.
_PG_SCHEMA_LOCK = 0x636861745F736368

# The one PostgreSQL-only clause of schema.sql: outbox.xid, the writing transaction's id.
# SQLite has no transaction ids (the loader drops the clause; the relay goes by row id there).
PG_XID_DEFAULT = "DEFAULT (pg_current_xact_id()::text::bigint)"


@dataclass(frozen=True)
class AddedColumn:
    """A column schema.sql gained after its table shipped, and how existing rows get it."""

    table: str
    column: str
    ddl: str
    backfill: str | None = None
    # Statements run after the column is added, per dialect, where the engines differ.
    backfill_by_dialect: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


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
    # Issue 14 item 6: the relay no longer marks each row published_at; it records a position
    # (relay_state). An existing outbox keeps its published_at column, unused; its rows get
    # the position that says what was published.
    AddedColumn(
        "outbox",
        "xid",
        "BIGINT",
        backfill_by_dialect={
            # Published rows get 0, which every position covers; the others 1, which the
            # first position (server/store/outbox.py, INITIAL) leaves to publish. The default
            # comes after, so that adding the column does not rewrite the table.
            "postgresql": (
                "UPDATE outbox SET xid = CASE WHEN published_at IS NULL THEN 1 ELSE 0 END",
                f"ALTER TABLE outbox ALTER COLUMN xid SET {PG_XID_DEFAULT}",
            ),
            # SQLite's position is a row id (ids follow commit order there): the first row
            # not published yet, or the one after the last.
            "sqlite": (
                """
                INSERT INTO relay_state (name, position, updated_at)
                SELECT 'outbox', n || ':' || n || ':', 0 FROM (
                    SELECT COALESCE(
                        (SELECT MIN(id) FROM outbox WHERE published_at IS NULL),
                        (SELECT MAX(id) + 1 FROM outbox),
                        1) AS n)
                """,
            ),
        },
    ),
)

# Indexes an existing database may still have and schema.sql no longer creates.
DROPPED_INDEXES = (
    # Rows the relay had not marked published: there is no such mark any more (outbox.xid).
    "outbox_unpublished",
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
        sql = sql.replace(f" {PG_XID_DEFAULT}", "")
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
        for stmt in added.backfill_by_dialect.get(conn.dialect.name, ()):
            await conn.exec_driver_sql(stmt)


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
    for index in DROPPED_INDEXES:
        if await _has_index(conn, index):
            await conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
