"""Database.write on both databases: writes that arrive together (one group-commit batch on
SQLite) commit independently: one that fails leaves no trace and does not make the others
fail or run twice. On SQLite the WAL is checkpointed by the server, not by a commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import accounts as accounts_store
from server.store import writer_connections
from server.store.db import Database, is_unique_violation
from server.store.tables import accounts


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


async def names(db: Database) -> list[str]:
    async def op(conn: AsyncConnection) -> list[str]:
        rows = await conn.execute(select(accounts.c.name).order_by(accounts.c.id))
        return [row[0] for row in rows]

    return await db.read(op)


async def test_a_failing_write_does_not_affect_the_others(db: Database) -> None:
    calls: dict[str, int] = {}

    async def good(conn: AsyncConnection, name: str) -> int:
        calls[name] = calls.get(name, 0) + 1
        account = await accounts_store.create_account(conn, name)
        return int(account["id"])

    async def fails_after_writing(conn: AsyncConnection) -> None:
        await accounts_store.create_account(conn, "half-written")
        raise ValueError("refused")

    async def violates_unique(conn: AsyncConnection) -> None:
        await accounts_store.create_account(conn, "before the violation")
        first = await accounts_store.create_account(conn, "dup")
        await conn.execute(accounts.insert().values({**first, "name": "dup again"}))

    results = await asyncio.wait_for(
        asyncio.gather(
            db.write(good, "a"),
            db.write(fails_after_writing),
            db.write(good, "b"),
            db.write(violates_unique),
            db.write(good, "c"),
            return_exceptions=True,
        ),
        timeout=30,
    )
    assert all(isinstance(r, int) for r in (results[0], results[2], results[4]))
    assert isinstance(results[1], ValueError)
    assert is_unique_violation(results[3])  # type: ignore[arg-type]
    assert sorted(await names(db)) == ["a", "b", "c"]  # PostgreSQL: any order
    assert calls == {"a": 1, "b": 1, "c": 1}
    # And the database takes writes afterwards.
    assert isinstance(await db.write(good, "d"), int)
    assert sorted(await names(db)) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # WAL checkpoints are SQLite's
async def test_sqlite_wal_is_checkpointed_between_batches(
    db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_connections, "CHECKPOINT_INTERVAL", 0.05)

    async def create(conn: AsyncConnection, name: str) -> Any:
        return await accounts_store.create_account(conn, name)

    await db.write(create, "first")
    await asyncio.sleep(0.1)
    await db.write(create, "second")  # the checkpoint runs after this batch commits
    path = make_url(db_url).database
    assert path is not None

    def wal_state() -> tuple[int, int, int]:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("PRAGMA wal_checkpoint(NOOP)").fetchone()  # type: ignore[no-any-return]
        finally:
            conn.close()

    # The write returned at its commit; the checkpoint follows in a thread.
    for _ in range(100):
        busy, wal_frames, checkpointed = wal_state()
        if wal_frames > 0 and checkpointed == wal_frames:
            break
        await asyncio.sleep(0.05)
    assert busy == 0
    assert wal_frames > 0 and checkpointed == wal_frames
