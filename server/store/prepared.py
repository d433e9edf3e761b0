"""Statements built once, for the hot paths (a visitor's message: identity, lock, insert, event).

Building a SQLAlchemy statement per call and letting the engine run it costs ~0.2-0.3 ms of
CPU per statement (construction, cache key, execution context, result wrapping, and on the
async engine a greenlet round trip per DBAPI call), 50-100 times what SQLite needs to run it,
and several times what asyncpg needs for a round trip to PostgreSQL. A `Prepared` statement
is built and compiled once per dialect, and inside a transaction the caller began:

- on SQLite (the in-loop driver of `sqlite_inline`) it runs on the sqlite3 connection
  directly;
- on PostgreSQL (asyncpg) it runs on the asyncpg connection directly, with asyncpg's
  prepared-statement cache, after making sure the transaction SQLAlchemy began has been
  sent to the server (SQLAlchemy's asyncpg adapter sends BEGIN lazily, on the first
  statement; a statement run before that would autocommit on its own);

both with the same bind and result processing as SQLAlchemy (JSON columns, booleans, floats)
and returning plain dicts keyed like `row._mapping`. Everywhere else (no transaction, other
drivers) it goes through `conn.execute`, which gets a cache hit on the prebuilt statement.

`one_autocommit`/`run_autocommit` run a statement on PostgreSQL outside any transaction: it
commits on its own, in the same round trip (for a write that is one statement, see
`engine/postgresql.write_if_unchanged`).

Parameters are passed by bindparam name; statements with expanding IN lists are not supported.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from server.store import sqlite_inline

Processor = Callable[[Any], Any] | None


class _Plan:
    __slots__ = ("binds", "columns", "compiled", "keys", "names", "results", "sql")

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("Prepared does not support expanding or literal-execute parameters")
        self.compiled = compiled
        self.sql = compiled.string
        # On asyncpg (numeric_dollar) positiontup is in $1..$n order, each name once.
        self.names = tuple(compiled.positiontup or ())
        self.binds: tuple[Processor, ...] = tuple(
            compiled.binds[name].type.bind_processor(dialect) for name in self.names
        )
        self.columns = list(getattr(stmt, "exported_columns", ()))
        self.keys = tuple(c.name for c in self.columns)
        self.results: tuple[Processor, ...] | None = tuple(
            c.type.result_processor(dialect, None) for c in self.columns
        )

    def parameters(self, params: dict[str, Any]) -> tuple[Any, ...]:
        values = self.compiled.construct_params(params)
        return tuple(
            proc(values[name]) if proc is not None else values[name]
            for name, proc in zip(self.names, self.binds, strict=True)
        )

    def row(self, raw: Any) -> dict[str, Any]:
        assert self.results is not None
        return {
            key: proc(value) if proc is not None else value
            for key, proc, value in zip(self.keys, self.results, raw, strict=True)
        }


class _PgPlan(_Plan):
    """A plan for asyncpg. Result processors are chosen by the column types PostgreSQL
    reports (as SQLAlchemy does from cursor.description), so they are set on first use."""

    __slots__ = ()

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        super().__init__(stmt, dialect)
        self.results = None

    async def resolve(self, driver: Any, dialect: Dialect) -> None:
        attributes = (await driver.prepare(self.sql)).get_attributes()
        if len(attributes) != len(self.columns):
            raise ValueError(f"{len(attributes)} result columns, expected {len(self.columns)}")
        self.results = tuple(
            c.type._cached_result_processor(dialect, attr.type.oid)
            for c, attr in zip(self.columns, attributes, strict=True)
        )


def _rowcount(status: str | None) -> int:
    """Affected rows from a command tag ("UPDATE 3", "INSERT 0 1", "DELETE 0")."""
    try:
        return int((status or "").rsplit(" ", 1)[-1])
    except ValueError:
        return -1


class Prepared:
    """A statement built once; `one`/`all`/`run` execute it with named parameters."""

    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        self._plans: dict[str, _Plan] = {}

    def _sqlite(self, conn: AsyncConnection) -> tuple[sqlite3.Connection, _Plan] | None:
        """The sqlite3 connection and plan, when the fast path applies."""
        driver = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
        if not isinstance(driver, sqlite_inline.InlineConnection) or driver._conn is None:
            return None
        plan = self._plans.get("sqlite")
        if plan is None:
            plan = self._plans["sqlite"] = _Plan(self.stmt, conn.dialect)
        return driver._conn, plan

    async def _sqlite_cursor(
        self, sqlite_conn: sqlite3.Connection, plan: _Plan, params: dict[str, Any]
    ) -> Any:
        args = plan.parameters(params)
        try:
            return await sqlite_inline.execute(sqlite_conn, plan.sql, args)
        except sqlite3.Error as exc:
            # Callers see what conn.execute would have raised (e.g. IntegrityError).
            raise DBAPIError.instance(plan.sql, args, exc, sqlite3.Error) from exc

    async def _pg(
        self, conn: AsyncConnection, params: dict[str, Any], how: str, *, autocommit: bool = False
    ) -> Any:
        """Run on the asyncpg connection: `how` is "one" (a row or None), "all" (rows) or
        "run" (the affected row count). NotImplemented when the fast path does not apply.
        With `autocommit` no transaction is begun: the statement commits on its own."""
        adapter = conn.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
        driver = getattr(adapter, "driver_connection", None)
        mutex = getattr(adapter, "_execute_mutex", None)
        if mutex is None or driver is None or not hasattr(adapter, "_start_transaction"):
            return NotImplemented
        dialect = conn.dialect
        plan = self._plans.get("asyncpg")
        if plan is None:
            plan = self._plans["asyncpg"] = _PgPlan(self.stmt, dialect)
        args = plan.parameters(params)
        async with mutex:
            try:
                # The transaction SQLAlchemy began: sent now if no statement has sent it yet.
                if adapter._transaction is None and not autocommit:
                    await adapter._start_transaction()
                if how == "run":
                    return _rowcount(await driver.execute(plan.sql, *args))
                if plan.results is None:
                    await plan.resolve(driver, dialect)  # type: ignore[attr-defined]
                if how == "one":
                    raw = await driver.fetchrow(plan.sql, *args)
                    return plan.row(raw) if raw is not None else None
                return [plan.row(raw) for raw in await driver.fetch(plan.sql, *args)]
            except DBAPIError:
                raise
            except Exception as exc:
                await _raise_as_sqlalchemy(conn, adapter, plan.sql, args, exc)
                raise  # unreachable: _raise_as_sqlalchemy always raises

    async def _fast(self, conn: AsyncConnection, params: dict[str, Any], how: str) -> Any:
        """The result by the driver-level path, or NotImplemented when it does not apply."""
        if not conn.in_transaction():
            return NotImplemented
        name = conn.dialect.name
        if name == "postgresql" and conn.dialect.driver == "asyncpg":
            return await self._pg(conn, params, how)
        if name != "sqlite":
            return NotImplemented
        raw = self._sqlite(conn)
        if raw is None:
            return NotImplemented
        sqlite_conn, plan = raw
        cursor = await self._sqlite_cursor(sqlite_conn, plan, params)
        try:
            if how == "one":
                found = cursor.fetchone()
                return plan.row(found) if found is not None else None
            if how == "all":
                return [plan.row(found) for found in cursor.fetchall()]
            return cursor.rowcount
        finally:
            cursor.close()

    async def _autocommit(self, conn: AsyncConnection, params: dict[str, Any], how: str) -> Any:
        if conn.in_transaction():
            raise RuntimeError("an autocommit statement runs outside a transaction")
        if conn.dialect.name != "postgresql" or conn.dialect.driver != "asyncpg":
            raise RuntimeError("autocommit statements are for PostgreSQL (asyncpg)")
        result = await self._pg(conn, params, how, autocommit=True)
        if result is NotImplemented:
            raise RuntimeError("not an asyncpg connection")
        return result

    async def one_autocommit(
        self, conn: AsyncConnection, params: dict[str, Any]
    ) -> dict[str, Any] | None:
        """PostgreSQL: the statement alone, committed on its own; its first row or None."""
        return await self._autocommit(conn, params, "one")  # type: ignore[no-any-return]

    async def run_autocommit(self, conn: AsyncConnection, params: dict[str, Any]) -> int:
        """PostgreSQL: the statement alone, committed on its own; the affected row count."""
        return await self._autocommit(conn, params, "run")  # type: ignore[no-any-return]

    async def one(self, conn: AsyncConnection, params: dict[str, Any]) -> dict[str, Any] | None:
        fast = await self._fast(conn, params, "one")
        if fast is NotImplemented:
            row = (await conn.execute(self.stmt, params)).first()
            return dict(row._mapping) if row is not None else None
        return fast  # type: ignore[no-any-return]

    async def all(self, conn: AsyncConnection, params: dict[str, Any]) -> list[dict[str, Any]]:
        fast = await self._fast(conn, params, "all")
        if fast is NotImplemented:
            return [dict(row._mapping) for row in await conn.execute(self.stmt, params)]
        return fast  # type: ignore[no-any-return]

    async def run(self, conn: AsyncConnection, params: dict[str, Any]) -> int:
        """Execute; returns the affected row count."""
        fast = await self._fast(conn, params, "run")
        if fast is NotImplemented:
            return (await conn.execute(self.stmt, params)).rowcount or 0  # type: ignore[attr-defined]
        return fast  # type: ignore[no-any-return]


async def _raise_as_sqlalchemy(
    conn: AsyncConnection, adapter: Any, sql: str, args: tuple[Any, ...], exc: Exception
) -> None:
    """Raise what conn.execute would have raised for a driver error: the adapter's DBAPI
    translation (asyncpg UniqueViolationError -> IntegrityError) wrapped in SQLAlchemy's
    DBAPIError subclass; a lost connection is invalidated so the pool drops it."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        adapter._handle_exception(exc)
    except dbapi_error as translated:
        disconnect = conn.dialect.is_disconnect(translated, adapter, None)
        wrapped = DBAPIError.instance(
            sql,
            args,
            translated,
            dbapi_error,
            connection_invalidated=disconnect,
            dialect=conn.dialect,
        )
        if disconnect:
            await conn.invalidate(wrapped)
        raise wrapped from exc
