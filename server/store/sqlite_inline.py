"""SQLite for the async engine without a thread hop per call.

SQLAlchemy's aiosqlite dialect runs every DBAPI call (open cursor, execute, fetch, close) on
aiosqlite's worker thread and waits for the answer through the event loop: four loop round
trips per statement, which costs far more than the statement itself (an indexed read or
insert into a local WAL file takes microseconds). This module hands the dialect (through
`create_async_engine(..., async_creator=...)`) an object with aiosqlite's interface whose
coroutines call the sqlite3 module directly on the loop's thread.

What makes that safe to do on the event loop thread:
- lock waits never block the loop: `busy_timeout` is 0 and a statement that gets SQLITE_BUSY
  (it had no effect) is retried after an `asyncio.sleep`, up to BUSY_TIMEOUT seconds;
- the WAL is checkpointed off the loop (see `Database`), not by a commit on this connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

BUSY_TIMEOUT = 10.0
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc)
    return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


async def _retry_busy(call: Callable[[], Any]) -> Any:
    """call(), again after a short async sleep while SQLite says another connection holds
    the lock (a statement that fails with SQLITE_BUSY has not run)."""
    try:
        return call()
    except sqlite3.OperationalError as exc:
        if not _busy(exc):
            raise
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.001
    while True:
        await asyncio.sleep(delay)
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() > deadline:
                raise
        delay = min(delay * 2, 0.05)


async def execute(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
    """Run one statement on a raw connection (see `prepared`); returns its open cursor."""
    return await _retry_busy(lambda: conn.execute(sql, args))  # type: ignore[no-any-return]


class InlineCursor:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = None) -> InlineCursor:
        cur = self._cursor
        if parameters is None:
            await _retry_busy(lambda: cur.execute(sql))
        else:
            await _retry_busy(lambda: cur.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)
        await _retry_busy(lambda: self._cursor.executemany(sql, rows))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _RunNow:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's dialect uses directly to
    set `isolation_level`: runs the call at once and resolves its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InlineConnection:
    """The part of aiosqlite.Connection that SQLAlchemy's aiosqlite dialect uses."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._tx = _RunNow()

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        assert self._conn is not None
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._conn is not None and self._conn.in_transaction

    def cursor(self) -> InlineCursor:
        if self._conn is None:
            raise ValueError("Connection closed")
        return InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        assert self._conn is not None
        await _retry_busy(self._conn.commit)

    async def rollback(self) -> None:
        assert self._conn is not None
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        assert self._conn is not None
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def creator(path: str, pragmas: Sequence[str]) -> Callable[[], Any]:
    """An `async_creator` for create_async_engine: opens `path` with our own transaction
    control (isolation_level=None: the engine emits BEGIN) and runs `pragmas`."""

    async def connect() -> InlineConnection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in pragmas:
            await _retry_busy(lambda p=pragma: conn.execute(p).close())  # type: ignore[misc]
        return InlineConnection(conn)

    return connect
