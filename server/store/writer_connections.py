"""The connections writes run on, kept between writes: a pool checkout and a new Connection
per write cost about as much CPU as a round trip (PostgreSQL) or more than a batch's BEGIN
and COMMIT (SQLite). One kind per engine, chosen once by Database:

- SQLiteWriter: the one connection SQLite's group-commit batches run on (SQLite has one
  writer anyway), each op of a batch in a savepoint of its own, and the WAL checkpoints
  between batches;
- PostgresWriters: one connection per writer slot (DB_WRITERS), each write its own
  transaction, run concurrently.

A connection that an error closed or invalidated, or left in a transaction, is replaced.
`drop` terminates a slot's connection without a round trip (the server may not answer), so
a transaction it had open is rolled back by the server and never commits."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.store.pools import close_quietly, discard

log = logging.getLogger("server.store.db")

# Set on a connection's info by a write that added to the outbox: the relay is woken after
# the commit (Database.on_commit).
OUTBOX_DIRTY = "outbox_dirty"

# Seconds between WAL checkpoints while writes keep coming (bounds the WAL's growth).
CHECKPOINT_INTERVAL = 0.5


class SQLiteWriter:
    def __init__(self, engine: AsyncEngine, path: str | None) -> None:
        self.engine = engine
        self._path = path  # None: in memory, nothing to checkpoint
        self._conn: AsyncConnection | None = None
        self._wrote_since_checkpoint = False
        self._last_checkpoint = 0.0

    async def connection(self, slot: int = 0) -> AsyncConnection:
        conn = self._conn
        if conn is not None and (conn.closed or conn.invalidated or conn.in_transaction()):
            self._conn = None
            await close_quietly(conn)
            conn = None
        if conn is None:
            conn = self._conn = await self.engine.connect()
        return conn

    async def run_batch(self, ops: list[Any], outcomes: list[tuple[bool, Any]]) -> bool:
        """Run the batch's ops in one transaction, each in a savepoint: an op that raises is
        rolled back alone, its error handed to its caller after the commit. True when one
        wrote to the outbox. Raises when an error ended the transaction itself."""
        self._wrote_since_checkpoint = True
        conn = await self.connection()
        async with conn.begin():
            raw = conn.sync_connection.connection.driver_connection._conn  # type: ignore[union-attr]
            for op, args, _, _ in ops:
                raw.execute("SAVEPOINT op")
                try:
                    result = await op(conn, *args)
                except Exception as exc:
                    raw.execute("ROLLBACK TO op")
                    raw.execute("RELEASE op")
                    outcomes.append((False, exc))
                else:
                    raw.execute("RELEASE op")
                    outcomes.append((True, result))
            return bool(conn.info.pop(OUTBOX_DIRTY, False))

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file, at most every CHECKPOINT_INTERVAL seconds,
        on a connection of its own in a thread: the loop keeps serving requests meanwhile
        (they queue up for the next batch). The next batch waits for it, so the checkpoint
        sees no new write, completes, and lets that batch start the WAL over from its
        beginning (a checkpoint racing a writer could leave the WAL growing for good)."""
        if self._path is None or not self._wrote_since_checkpoint:
            return
        now = time.monotonic()
        if now - self._last_checkpoint < CHECKPOINT_INTERVAL:
            return
        self._last_checkpoint = now
        self._wrote_since_checkpoint = False
        try:
            await asyncio.to_thread(_checkpoint_wal, self._path)
        except sqlite3.Error:
            log.warning("WAL checkpoint failed; will try again", exc_info=True)

    def lost(self) -> None:
        """The database was unreachable: for a file on this machine, nothing to forget."""

    async def drop(self, slot: int = 0) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await discard(conn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class PostgresWriters:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conns: dict[int, AsyncConnection] = {}
        # When each slot's connection was opened, and when the database was last found
        # unreachable: a connection older than that is not trusted again.
        self._opened: dict[int, float] = {}
        self._lost_at = 0.0

    async def connection(self, slot: int = 0) -> AsyncConnection:
        conn = self._conns.get(slot)
        if conn is not None and (
            conn.closed
            or conn.invalidated
            or conn.in_transaction()
            or self._opened[slot] < self._lost_at
        ):
            del self._conns[slot]
            await discard(conn)
            conn = None
        if conn is None:
            conn = self._conns[slot] = await self.engine.connect()
            self._opened[slot] = time.monotonic()
        return conn

    async def checkpoint(self) -> None:
        """PostgreSQL checkpoints by itself."""

    def lost(self) -> None:
        """The database was unreachable: every connection opened before now is likely dead
        (a restart, a failover); each is replaced when its slot next writes, rather than let
        it fail one more request once the database is back."""
        self._lost_at = time.monotonic()

    async def drop(self, slot: int = 0) -> None:
        conn = self._conns.pop(slot, None)
        if conn is not None:
            await discard(conn)

    async def close(self) -> None:
        for conn in self._conns.values():
            await close_quietly(conn)
        self._conns.clear()


def _checkpoint_wal(path: str) -> None:
    """PASSIVE, and no busy wait (timeout=0): never waits for a lock, so the thread (which
    shutdown waits for) ends at once; what it could not copy is copied next time."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()
