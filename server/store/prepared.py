"""Statements built once, for the hot paths (a visitor's message: identity, lock, insert, event).

Building a SQLAlchemy statement per call and letting the engine run it costs ~0.2-0.3 ms of
CPU per statement (construction, cache key, execution context, result wrapping, and on the
async engine a greenlet round trip per DBAPI call), 50-100 times what SQLite needs to run it.
A `Prepared` statement is built and compiled once per dialect:

- on SQLite (the in-loop driver of `sqlite_inline`, inside a transaction the caller began) it
  runs on the sqlite3 connection directly, with the same bind and result processing as
  SQLAlchemy (JSON columns, booleans), and returns plain dicts keyed like `row._mapping`;
- everywhere else it goes through `conn.execute`, which gets a cache hit on the prebuilt
  statement.

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


class _Plan:
    __slots__ = ("binds", "compiled", "keys", "names", "results", "sql")

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.compiled = compiled
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())
        self.binds: tuple[Callable[[Any], Any] | None, ...] = tuple(
            compiled.binds[name].type.bind_processor(dialect) for name in self.names
        )
        columns = list(getattr(stmt, "exported_columns", ()))
        self.keys = tuple(c.name for c in columns)
        self.results: tuple[Callable[[Any], Any] | None, ...] = tuple(
            c.type.result_processor(dialect, None) for c in columns
        )

    def parameters(self, params: dict[str, Any]) -> tuple[Any, ...]:
        values = self.compiled.construct_params(params)
        return tuple(
            proc(values[name]) if proc is not None else values[name]
            for name, proc in zip(self.names, self.binds, strict=True)
        )

    def row(self, raw: tuple[Any, ...]) -> dict[str, Any]:
        return {
            key: proc(value) if proc is not None else value
            for key, proc, value in zip(self.keys, self.results, raw, strict=True)
        }


class Prepared:
    """A statement built once; `one`/`all`/`run` execute it with named parameters."""

    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        self._plans: dict[str, _Plan] = {}

    def _raw(self, conn: AsyncConnection) -> tuple[Any, _Plan] | None:
        """The sqlite3 connection and plan, when the fast path applies."""
        if conn.dialect.name != "sqlite" or not conn.in_transaction():
            return None
        driver = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
        if not isinstance(driver, sqlite_inline.InlineConnection) or driver._conn is None:
            return None
        plan = self._plans.get("sqlite")
        if plan is None:
            plan = self._plans["sqlite"] = _Plan(self.stmt, conn.dialect)
        return driver._conn, plan

    async def _cursor(self, conn: AsyncConnection, params: dict[str, Any]) -> Any:
        raw = self._raw(conn)
        if raw is None:
            return None
        sqlite_conn, plan = raw
        args = plan.parameters(params)
        try:
            return plan, await sqlite_inline.execute(sqlite_conn, plan.sql, args)
        except sqlite3.Error as exc:
            # Callers see what conn.execute would have raised (e.g. IntegrityError).
            raise DBAPIError.instance(plan.sql, args, exc, sqlite3.Error) from exc

    async def one(self, conn: AsyncConnection, params: dict[str, Any]) -> dict[str, Any] | None:
        fast = await self._cursor(conn, params)
        if fast is None:
            row = (await conn.execute(self.stmt, params)).first()
            return dict(row._mapping) if row is not None else None
        plan, cursor = fast
        try:
            raw = cursor.fetchone()
        finally:
            cursor.close()
        return plan.row(raw) if raw is not None else None

    async def all(self, conn: AsyncConnection, params: dict[str, Any]) -> list[dict[str, Any]]:
        fast = await self._cursor(conn, params)
        if fast is None:
            return [dict(row._mapping) for row in await conn.execute(self.stmt, params)]
        plan, cursor = fast
        try:
            return [plan.row(raw) for raw in cursor.fetchall()]
        finally:
            cursor.close()

    async def run(self, conn: AsyncConnection, params: dict[str, Any]) -> int:
        """Execute; returns the affected row count."""
        fast = await self._cursor(conn, params)
        if fast is None:
            return (await conn.execute(self.stmt, params)).rowcount or 0  # type: ignore[attr-defined]
        _, cursor = fast
        try:
            return cursor.rowcount
        finally:
            cursor.close()
