"""All SQL. Reads per aggregate (accounts, contacts, conversations, messages), the writes of
each kind (writes.py: one call each; conversation_writes.py, message_writes.py, and the
engine's own in engine/), the rules every statement shares (rules.py), and the payloads
built from reads (payloads.py). Every function that takes an AsyncConnection runs inside the
caller's transaction (see Database.read / Database.write)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncConnection


def one(result: Result[Any] | CursorResult[Any]) -> dict[str, Any] | None:
    row = result.first()
    return dict(row._mapping) if row is not None else None


def all_rows(result: Result[Any] | CursorResult[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in result]


async def ping(conn: AsyncConnection) -> None:
    """SELECT 1: the database answers (the readiness check)."""
    await conn.execute(text("SELECT 1"))
