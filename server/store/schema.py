"""Applies schema.sql, idempotently, on SQLite or PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema.sql"

# Any constant works; it only has to be the same in every process applying the schema.
_PG_SCHEMA_LOCK = 0x636861745F736368


def statements(dialect: str, text: str | None = None) -> list[str]:
    """The DDL statements of schema.sql, spelled for `dialect` ("sqlite" or "postgresql")."""
    text = SCHEMA_PATH.read_text() if text is None else text
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    if dialect == "sqlite":
        text = text.replace("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY")
    return [stmt.strip() for stmt in re.split(r";\s*(?:\n|$)", text) if stmt.strip()]


async def apply(conn: AsyncConnection) -> None:
    """Create what is missing. Several processes may start at once: PostgreSQL serializes
    them with an advisory lock, SQLite with its write lock (BEGIN IMMEDIATE)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_SCHEMA_LOCK})")
    for stmt in statements(dialect):
        await conn.exec_driver_sql(stmt)
