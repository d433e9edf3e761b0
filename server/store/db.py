"""The database handle: transactions, deadlines, and group commit for writes.

Writes go through `Database.write(op, *args)`. On SQLite, concurrent writes are gathered into
one transaction (group commit): SQLite has one writer anyway, and one commit for many requests
lets a single process commit thousands of messages a second. Each op runs in a savepoint, so
one that raises is rolled back alone (should the commit fail, or an error end the whole
transaction, every op of the batch is run again alone). On PostgreSQL each write is its own
transaction, several at once (`pg_writers`), and `write_autocommit` runs an op whose writes
are single statements outside any transaction: no BEGIN and COMMIT round trips. The
connections writes run on are kept per engine (writer_connections.py).

Every call has a deadline (`timeout`, DB_TIMEOUT), from the moment it is asked for: a write
waiting for its turn counts. Past it the call raises DatabaseUnavailable (the API answers
503) and what it did is undone: a PostgreSQL connection in the middle of a call is
terminated at once (no round trip: the server may be frozen), so a transaction whose COMMIT
was never sent is rolled back by the server and never commits later; a SQLite batch past
the deadline of its oldest write is rolled back whole. Errors that mean the database cannot
answer (unreachable, disk full) raise DatabaseUnavailable too; `outage` logs and counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import migrate
from server.store.call_times import CallTimes
from server.store.pools import (
    discard,
    is_unique_violation,
    postgresql_engine,
    safe_database_url,
    sqlite_engine,
)
from server.store.unavailable import TIMEOUT, UNREACHABLE, DatabaseUnavailable, Outage, kind_of
from server.store.writer_connections import OUTBOX_DIRTY, PostgresWriters, SQLiteWriter

__all__ = ["OUTBOX_DIRTY", "CallTimes", "Database", "is_unique_violation", "safe_database_url"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Op = Callable[Concatenate[AsyncConnection, P], Awaitable[T]]

# Concurrent write transactions per process on PostgreSQL (DB_WRITERS). More than the
# database has cores only adds context switches; 6 per process is ample for 500 messages/s
# (about 2 ms each). On this 2-core VM the latency difference against 16 was within the
# run-to-run noise (docs/benchmarks.md).
PG_WRITERS = 6

# Seconds a database call may take, from being asked for to its answer (DB_TIMEOUT).
DB_TIMEOUT = 5.0


class Database:
    def __init__(
        self,
        url: str,
        *,
        batch_max: int = 128,
        pg_writers: int = PG_WRITERS,
        timeout: float = DB_TIMEOUT,
        auto_migrate: bool | None = None,
        timed: bool = True,
    ) -> None:
        self.url = url
        self.dialect = make_url(url).get_dialect().name
        # Migrate at start (AUTO_MIGRATE), else refuse a schema that is not the code's.
        # Unset: SQLite migrates itself (embedded, one owner), PostgreSQL does not.
        self.auto_migrate = self.dialect == "sqlite" if auto_migrate is None else auto_migrate
        self.batch_max = batch_max
        self.timeout = timeout
        self.outage = Outage()
        # Call latency per kind (chat_db_call_duration_seconds); None: not timed
        # (METRICS_ENABLED=0).
        self.call_times: dict[str, CallTimes] | None = (
            {"read": CallTimes(), "write": CallTimes()} if timed else None
        )
        self._read_times = self.call_times["read"] if self.call_times else None
        self._write_times = self.call_times["write"] if self.call_times else None
        if self.dialect == "sqlite":
            path = make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # 2: the connection the batches keep (SQLiteWriter), and one for anyone else (a
            # test, a tool) who asks the engine directly.
            self.writer = sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=2)
            self.reader = sqlite_engine(url, begin="BEGIN", pool_size=4)
            self._kept: SQLiteWriter | PostgresWriters = SQLiteWriter(
                self.writer, path if path and path != ":memory:" else None
            )
        else:
            # PostgreSQL merges the fsyncs of concurrent commits itself, and a statement is a
            # network round trip: there each write is its own transaction, run concurrently
            # (a batch would serialize round trips, and two batches could lock the same
            # conversations in opposite orders and deadlock).
            self.batch_max = 1
            self.writer = postgresql_engine(url, pool_size=pg_writers + 8, timeout=timeout)
            self.reader = self.writer
            self._kept = PostgresWriters(self.writer)
        self.on_commit: list[Callable[[], None]] = []
        # (op, args, future, deadline on the loop's clock)
        self._pending: deque[
            tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], asyncio.Future[Any], float]
        ] = deque()
        self._wake = asyncio.Event()
        self._writers = 1 if self.dialect == "sqlite" else pg_writers

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    async def start(self) -> None:
        """Migrate the schema or check it (see `auto_migrate`; raises SchemaNotCurrent),
        then start the writers."""
        if self.auto_migrate:
            await self.migrate()
        else:
            async with self.reader.connect() as conn:
                await migrate.check(conn, safe_database_url(self.url))
        self._writer_tasks = [
            asyncio.create_task(self._write_loop(i), name=f"db-writer-{i}")
            for i in range(self._writers)
        ]

    async def migrate(self, target: str = "heads") -> migrate.SchemaState:
        """Bring the schema to the code's revision (`python -m server migrate`, AUTO_MIGRATE),
        in one transaction under the migration lock. Returns the state before."""
        where = safe_database_url(self.url)
        if not self.is_postgresql:
            async with self.writer.begin() as conn:  # BEGIN IMMEDIATE: the write lock
                return await migrate.upgrade(conn, where, target)
        # Without deadlines: building an index on a large table may take longer.
        migrator = postgresql_engine(self.url, pool_size=1, timeout=None)
        try:
            async with migrator.begin() as conn:
                return await migrate.upgrade(conn, where, target)
        finally:
            await migrator.dispose()

    async def close(self) -> None:
        for task in getattr(self, "_writer_tasks", []):
            task.cancel()
        for task in getattr(self, "_writer_tasks", []):
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._pending:
            _, _, fut, _ = self._pending.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("database closed"))
        await self._kept.close()
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op` in a read transaction, within the deadline."""
        started = time.perf_counter()
        conn: AsyncConnection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self.reader.connect()
                await conn.begin()
                result = await op(conn, *args, **kwargs)
                await conn.commit()
                await conn.close()
        except BaseException as exc:
            if conn is not None:
                await self._release(conn, exc)
            error = self._unavailable(exc, write=False)
            if error is exc:
                raise
            raise error from exc
        finally:
            if self._read_times is not None:
                self._read_times.observe(time.perf_counter() - started)
        if self.outage.active:
            self.outage.recovered(write=False)
        return result

    async def write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op` in a write transaction; returns once its effects are committed. Raises
        DatabaseUnavailable, with nothing committed, past the deadline."""
        if kwargs:
            args = (*args, kwargs)  # type: ignore[assignment]
            op = _with_kwargs(op)  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append((op, args, fut, loop.time() + self.timeout))
        self._wake.set()
        try:
            result = await fut
        except Exception as exc:
            error = self._unavailable(exc, write=True)
            if error is exc:
                raise
            raise error from exc
        finally:
            if self._write_times is not None:
                self._write_times.observe(time.perf_counter() - started)
        if self.outage.active:
            self.outage.recovered(write=True)
        return result

    def _unavailable(self, exc: BaseException, *, write: bool) -> BaseException:
        """What the caller of a failed call gets: DatabaseUnavailable (counted and logged by
        `outage`) when the database could not answer, else the error itself."""
        if isinstance(exc, asyncio.CancelledError):
            return exc  # the caller was cancelled: not the database's doing
        kind = kind_of(exc)
        if kind is None:
            return exc
        self.outage.failed(kind, exc, write=write)
        if kind == UNREACHABLE:
            # Every connection opened before now is likely dead (a restart, a failover):
            # each is replaced as it comes up, rather than fail one more request.
            self._kept.lost()
            self.writer.pool._invalidate(None)  # type: ignore[arg-type]  # recycled on checkout
        if isinstance(exc, DatabaseUnavailable):
            return exc
        return DatabaseUnavailable(kind, type(exc).__name__)

    async def _release(self, conn: AsyncConnection, exc: BaseException) -> None:
        """Give back a connection whose call failed: rolled back when the database answers,
        terminated when it may not (past the deadline, cancelled, connection trouble)."""
        if isinstance(exc, (asyncio.CancelledError, TimeoutError)) or kind_of(exc):
            await discard(conn)
            return
        try:
            async with asyncio.timeout(self.timeout):
                await conn.rollback()
                await conn.close()
        except BaseException:
            await discard(conn)

    async def write_autocommit(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op` on a connection outside any transaction, in the writers' turn (so at most
        `pg_writers` writes at once, as with `write`). Each statement commits on its own, so
        `op` must write with one statement, or with statements that stand alone (see
        Prepared.one_autocommit). On SQLite this is `write`: the op runs in the batch's
        transaction, which is as atomic."""
        if self.is_sqlite:
            return await self.write(op, *args, **kwargs)
        if kwargs:
            args = (*args, kwargs)  # type: ignore[assignment]
            op = _with_kwargs(op)  # type: ignore[assignment]
        return await self.write(_Autocommit(op), *args)  # type: ignore[arg-type]

    async def _write_loop(self, slot: int) -> None:
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            batch = []
            while self._pending and len(batch) < self.batch_max:
                batch.append(self._pending.popleft())
            if self._pending:
                self._wake.set()
            _expire(batch, asyncio.get_running_loop().time())
            try:
                if self.is_sqlite:
                    await self._run_sqlite_batch(batch)
                    await self._kept.checkpoint()
                else:
                    await self._run_each_alone([i for i in batch if not i[2].done()], slot)
            except asyncio.CancelledError:
                for _, _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(RuntimeError("database closed"))
                raise

    async def _run_sqlite_batch(self, batch: list[Any]) -> None:
        """The batch in one transaction, each op in a savepoint of its own (SQLite)."""
        live = [item for item in batch if not item[2].done()]
        if not live:
            return
        assert isinstance(self._kept, SQLiteWriter)
        outcomes: list[tuple[bool, Any]] = []
        try:
            async with asyncio.timeout_at(min(item[3] for item in live)):
                dirty = await self._kept.run_batch(live, outcomes)
        except TimeoutError as exc:
            # Past the oldest write's deadline (a lock held elsewhere, a stalled disk): the
            # transaction was rolled back, nothing of the batch committed; each gets a 503.
            for _, _, fut, _ in live:
                if not fut.done():
                    fut.set_exception(DatabaseUnavailable(TIMEOUT, "write batch"))
            log.debug("SQLite batch past its deadline", exc_info=exc)
            return
        except Exception:
            await self._run_each_alone(live)
            return
        for (_, _, fut, _), (ok, value) in zip(live, outcomes, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        self._committed(dirty)

    async def _run_each_alone(self, live: list[Any], slot: int = 0) -> None:
        """Each op in a transaction of its own (or none, for `write_autocommit`): PostgreSQL's
        way, and SQLite's fallback when an error ended a batch's transaction. Each within
        its deadline: past it, the connection is dropped (see `_drop_writer`)."""
        loop = asyncio.get_running_loop()
        for op, args, fut, deadline in live:
            if fut.done():
                continue
            if loop.time() >= deadline:
                fut.set_exception(DatabaseUnavailable(TIMEOUT, "waiting for a writer"))
                continue
            try:
                async with asyncio.timeout_at(deadline):
                    if isinstance(op, _Autocommit):
                        conn = await self._kept.connection(slot)
                        result = await op.op(conn, *args)
                        dirty = conn.info.pop(OUTBOX_DIRTY, False)
                    else:
                        async with self._transaction(slot) as conn:
                            result = await op(conn, *args)
                            dirty = conn.info.pop(OUTBOX_DIRTY, False)
            except Exception as exc:  # handed to the caller, who maps it to a response
                if isinstance(exc, TimeoutError) or kind_of(exc):
                    await self._drop_writer(slot)
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(result)
                self._committed(dirty)

    async def _drop_writer(self, slot: int) -> None:
        """The writer connection of a call that timed out or lost the database: terminated
        without a round trip, so that a transaction it had open is rolled back by the server
        and never commits; the next write opens a new one."""
        await self._kept.drop(slot)

    @contextlib.asynccontextmanager
    async def _transaction(self, slot: int) -> AsyncIterator[AsyncConnection]:
        conn = await self._kept.connection(slot)
        transaction = await conn.begin()
        try:
            yield conn
        except BaseException as exc:
            # Past the deadline or with the database gone, no ROLLBACK round trip (it may
            # never be answered): the caller drops the connection, which rolls it back.
            if not isinstance(exc, (asyncio.CancelledError, TimeoutError)) and not kind_of(exc):
                await transaction.rollback()
            raise
        await transaction.commit()

    def _committed(self, outbox_dirty: bool) -> None:
        if outbox_dirty:
            for callback in self.on_commit:
                try:
                    callback()
                except Exception:
                    log.exception("on_commit callback failed")


def _expire(batch: list[Any], now: float) -> None:
    """Fail the writes of `batch` whose deadline passed while they waited for a writer."""
    for _, _, fut, deadline in batch:
        if not fut.done() and now >= deadline:
            fut.set_exception(DatabaseUnavailable(TIMEOUT, "waiting for a writer"))


class _Autocommit:
    """An op for `write_autocommit`: run outside a transaction (PostgreSQL)."""

    __slots__ = ("op",)

    def __init__(self, op: Callable[..., Awaitable[Any]]) -> None:
        self.op = op


def _with_kwargs(op: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    async def call(conn: AsyncConnection, *args: Any) -> T:
        *positional, kwargs = args
        return await op(conn, *positional, **kwargs)

    return call
