"""Labels, read: an account's labels, and whether it has one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import all_rows, one
from server.store.tables import labels


async def of_account(conn: AsyncConnection, account_id: int) -> list[dict[str, Any]]:
    """The account's labels by title (at most server.labels.MAX_PER_ACCOUNT)."""
    return all_rows(
        await conn.execute(
            select(labels).where(labels.c.account_id == account_id).order_by(labels.c.title)
        )
    )


async def by_title(conn: AsyncConnection, account_id: int, title: str) -> dict[str, Any] | None:
    return one(
        await conn.execute(
            select(labels).where(labels.c.account_id == account_id, labels.c.title == title)
        )
    )


async def count(conn: AsyncConnection, account_id: int) -> int:
    result = await conn.execute(
        select(func.count()).select_from(labels).where(labels.c.account_id == account_id)
    )
    return int(result.scalar_one())
