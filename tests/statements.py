"""What a request costs the database: every statement the drivers run, in the order they are
sent, reduced to a short shape ("UPDATE conversations", "SELECT contacts", "BEGIN").

Nothing is mocked: on SQLite every connection of the app gets sqlite3's trace callback (which
SQLite calls for each statement it runs, BEGIN and SAVEPOINT included); on PostgreSQL the
asyncpg methods that send a statement (Connection.execute/fetch/fetchrow/fetchval and the
PreparedStatement ones SQLAlchemy uses) are wrapped for the duration of the test, recording
the statement as it is sent, then calling through. Statement cache misses (asyncpg's
`prepare`) are not recorded: they happen once per connection, not per request."""

from __future__ import annotations

import re
from typing import Any

import pytest
from asyncpg.connection import Connection as PgConnection
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy import event

from server.store.db import Database

_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
_WRITE = re.compile(r"\b(INSERT INTO|UPDATE|DELETE FROM)\s+\"?(\w+)", re.IGNORECASE)
_FROM = re.compile(r"\bFROM\s+\"?(\w+)", re.IGNORECASE)


def _top_level(sql: str) -> str:
    """`sql` without anything inside parentheses (subqueries, column lists, calls)."""
    out: list[str] = []
    depth = 0
    for char in sql:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


def shape(sql: str) -> str | None:
    """A statement in a few words: its writes in order ("UPDATE conversations + INSERT
    messages + INSERT outbox + NOTIFY" for one statement that does all that), else "SELECT"
    and the table it reads from (and FOR UPDATE: a row lock); None for what is no part of a
    request (PRAGMA)."""
    text = " ".join(sql.split()).rstrip(";")
    upper = text.upper()
    if upper.startswith("PRAGMA"):
        return None
    for word in _CONTROL:
        if upper.startswith(word):
            return "BEGIN" if word == "BEGIN" else word
    parts = [f"{verb.split()[0].upper()} {table}" for verb, table in _WRITE.findall(text)]
    if "pg_notify" in text:
        parts.append("NOTIFY")
    if parts:
        return " + ".join(parts)
    found = _FROM.search(_top_level(text))
    lock = " FOR UPDATE" if upper.endswith("FOR UPDATE") else ""
    return f"SELECT {found.group(1) if found else '-'}{lock}"


class StatementLog:
    """The shapes of the statements an app's database runs, between `clear()` and `take()`."""

    def __init__(self) -> None:
        self.shapes: list[str] = []
        self.texts: list[str] = []  # the statements themselves, whitespace collapsed
        self.on = False

    def record(self, sql: str) -> None:
        if self.on:
            found = shape(sql)
            if found is not None:
                self.shapes.append(found)
                self.texts.append(" ".join(sql.split()))

    def clear(self) -> None:
        self.shapes, self.texts = [], []
        self.on = True

    def take(self) -> list[str]:
        self.on = False
        shapes, self.shapes = self.shapes, []
        return shapes


def watch(db: Database, monkeypatch: pytest.MonkeyPatch) -> StatementLog:
    """A StatementLog of `db`; call before the database starts (connections opened after
    this are traced on SQLite)."""
    log = StatementLog()
    if db.is_sqlite:
        for engine in {db.writer, db.reader}:
            event.listen(engine.sync_engine, "connect", _trace_sqlite(log))
        return log
    for cls, names in (
        (PgConnection, ("execute", "fetch", "fetchrow", "fetchval", "executemany")),
        (PreparedStatement, ("fetch", "fetchrow", "fetchval", "executemany")),
    ):
        for name in names:
            monkeypatch.setattr(cls, name, _spy(log, getattr(cls, name)))
    return log


def _trace_sqlite(log: StatementLog) -> Any:
    def connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection._conn.set_trace_callback(log.record)

    return connected


def _spy(log: StatementLog, method: Any) -> Any:
    async def sent(self: Any, *args: Any, **kwargs: Any) -> Any:
        query = self.get_query() if isinstance(self, PreparedStatement) else args[0]
        log.record(query)
        return await method(self, *args, **kwargs)

    return sent
