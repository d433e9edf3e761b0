"""SQLAlchemy engines (connection pools) for each database, and the helpers every caller of
them shares: dropping a connection that may be mid-call, a URL fit for a log line, telling a
unique violation on either engine."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.store import sqlite_inline

log = logging.getLogger("server.store.db")

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    # Lock waits are async retries in sqlite_inline, never a blocking wait on the loop.
    "PRAGMA busy_timeout=0",
    "PRAGMA foreign_keys=ON",
    # No checkpoint inside a commit on the event loop thread (its fsync would stall every
    # request): the SQLite writer checkpoints from a thread, between batches.
    "PRAGMA wal_autocheckpoint=0",
)


def sqlite_engine(url: str, *, begin: str, pool_size: int) -> AsyncEngine:
    path = make_url(url).database or ":memory:"
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        async_creator=sqlite_inline.creator(path, SQLITE_PRAGMAS),
    )

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight on the sqlite3 connection: through exec_driver_sql, BEGIN costs as much
        # CPU as a whole message's statements. That path (which waits out a lock held by
        # another connection, and raises SQLAlchemy's errors) remains for when it fails.
        raw = conn.connection.driver_connection
        try:
            raw._conn.execute(begin).close()
        except sqlite3.Error:
            conn.exec_driver_sql(begin)

    return engine


def postgresql_engine(url: str, *, pool_size: int, timeout: float | None) -> AsyncEngine:
    """asyncpg with deadlines (when `timeout` is set): connecting, waiting for a pooled
    connection, and every statement (asyncpg's command_timeout, which also covers the
    driver-level statements of `prepared`), with PostgreSQL's statement_timeout beside it so
    the server stops working on a statement nobody waits for any more."""
    if timeout is None:
        return create_async_engine(url, pool_size=pool_size, max_overflow=8)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=8,
        pool_timeout=timeout,
        connect_args={
            "timeout": timeout,
            "command_timeout": timeout,
            "server_settings": {"statement_timeout": str(max(1, int(timeout * 1000)))},
        },
    )


async def discard(conn: AsyncConnection) -> None:
    """Drop a connection that may be mid-call, with no round trip to the database: the
    driver's socket is closed at once (asyncpg's terminate), then the pool forgets it."""
    try:
        adapter = conn.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
        driver = getattr(adapter, "driver_connection", None)
        if driver is not None and hasattr(driver, "terminate"):
            driver.terminate()
    except Exception:
        pass  # already invalidated or closed: nothing left to cut
    try:
        await conn.invalidate()
    except Exception:
        pass
    await close_quietly(conn)


async def close_quietly(conn: AsyncConnection) -> None:
    try:
        await conn.close()
    except Exception:
        log.warning("closing a writer connection failed", exc_info=True)


def safe_database_url(url: str) -> str:
    """The URL without credentials, for log lines and messages."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('@')[-1]}"


def is_unique_violation(exc: BaseException) -> bool:
    """True for a UNIQUE constraint failure on either engine."""
    if not isinstance(exc, DBAPIError):
        return False
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate key" in text
