"""schema.sql on both databases: applying it again changes nothing, and the tables it creates
are the ones server/store/tables.py builds queries for (the drift test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import accounts as accounts_store
from server.store import contacts as contacts_store
from server.store import conversation_writes, schema
from server.store.db import Database
from server.store.tables import metadata


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()  # applies schema.sql once
    try:
        yield database
    finally:
        await database.close()


def _kind(type_: Any) -> str:
    """A coarse type family, the same for a DDL type and its SQLAlchemy mirror."""
    name = type(type_).__name__.upper()
    if "BOOL" in name:
        return "bool"
    if "INT" in name:
        return "int"
    if "FLOAT" in name or "DOUBLE" in name or "REAL" in name or "NUMERIC" in name:
        return "float"
    if "TEXT" in name or "CHAR" in name or "STRING" in name:
        return "text"
    return name


def _mirror_kind(column: Any) -> str:
    impl = getattr(column.type, "impl", column.type)  # JSONText keeps JSON in TEXT
    return _kind(impl if not isinstance(impl, type) else impl())


async def reflect(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    def run(sync: Any) -> dict[str, dict[str, Any]]:
        insp = inspect(sync)
        out = {}
        for table in insp.get_table_names():
            pk = set(insp.get_pk_constraint(table)["constrained_columns"])
            out[table] = {
                "columns": {
                    col["name"]: (col["nullable"] and col["name"] not in pk, _kind(col["type"]))
                    for col in insp.get_columns(table)
                },
                "pk": pk,
            }
        return out

    return await conn.run_sync(run)


async def test_tables_match_the_query_mirrors(db: Database) -> None:
    async with db.writer.connect() as conn:
        actual = await reflect(conn)
    # Every mirrored table exists with exactly its columns, nullability, types and keys.
    for table in metadata.sorted_tables:
        assert table.name in actual, f"{table.name} is in tables.py but not in schema.sql"
        expected_columns = {
            col.name: (bool(col.nullable) and not col.primary_key, _mirror_kind(col))
            for col in table.columns
        }
        assert actual[table.name]["columns"] == expected_columns, table.name
        assert actual[table.name]["pk"] == {c.name for c in table.primary_key.columns}
    # And schema.sql creates no table the mirrors lack (or the queries would not know it).
    assert set(actual) == {t.name for t in metadata.sorted_tables}


async def test_applying_the_schema_again_is_idempotent(db: Database) -> None:
    async def seed(conn: AsyncConnection) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Kept")
        return await accounts_store.create_inbox(conn, account_id=account["id"], name="Kept")

    inbox = await db.write(seed)
    async with db.writer.connect() as conn:
        before = await reflect(conn)
    for _ in range(2):
        async with db.writer.begin() as conn:
            await schema.apply(conn)
    async with db.writer.connect() as conn:
        after = await reflect(conn)
        indexes = await conn.run_sync(
            lambda sync: {t: inspect(sync).get_indexes(t) for t in inspect(sync).get_table_names()}
        )
    assert after == before
    for table, found in indexes.items():
        names = [ix["name"] for ix in found]
        assert len(names) == len(set(names)), f"duplicate indexes on {table}: {names}"
    found_inbox = await db.read(accounts_store.inbox_by_website_token, inbox["website_token"])
    assert found_inbox is not None and found_inbox["name"] == "Kept"


async def test_a_second_process_starting_on_the_same_database(db_url: str, db: Database) -> None:
    """Two web processes start at once against one database: both apply the schema."""
    other = Database(db_url)
    await other.start()
    try:
        async with other.writer.connect() as conn:
            assert set(await reflect(conn)) == {t.name for t in metadata.sorted_tables}
    finally:
        await other.close()


def test_every_statement_is_idempotent_ddl() -> None:
    """Each statement schema.sql holds only creates what is missing."""
    for dialect in ("sqlite", "postgresql"):
        for stmt in schema.statements(dialect):
            head = " ".join(stmt.split()[:6]).upper()
            assert head.startswith(
                (
                    "CREATE TABLE IF NOT EXISTS",
                    "CREATE INDEX IF NOT EXISTS",
                    "CREATE UNIQUE INDEX IF NOT EXISTS",
                )
            ), head


async def test_the_echo_index_arrives_on_a_database_holding_retries(db: Database) -> None:
    """A database from before messages_sender_echo holds retried messages twice: starting on
    it keeps every message, leaves the first of each its echo_id, and creates the index."""

    async def seed(conn: AsyncConnection) -> None:
        account = await accounts_store.create_account(conn, "Old")
        inbox = await accounts_store.create_inbox(conn, account_id=account["id"], name="Old")
        await conn.exec_driver_sql("DROP INDEX messages_sender_echo")
        contact, ci = await contacts_store.create_identity(
            conn, account_id=account["id"], inbox_id=inbox["id"]
        )
        conv = await conversation_writes.open_new(conn, inbox, contact, ci)
        conv_id = conv["id"]
        for echo_id in ("e1", "e1", "e1", "e2", None, None):
            await conn.execute(
                text(
                    "INSERT INTO messages (account_id, inbox_id, conversation_id, message_type,"
                    " content_type, private, status, sender_type, sender_id, echo_id,"
                    " content_attributes, additional_attributes, created_at, updated_at)"
                    " VALUES (:a, :i, :c, 0, 'text', FALSE, 'sent', 'Contact', 7, :e,"
                    " '{}', '{}', 0, 0)"
                ),
                {"a": account["id"], "i": inbox["id"], "c": conv_id, "e": echo_id},
            )

    await db.write(seed)
    async with db.writer.begin() as conn:
        await schema.apply(conn)
    async with db.writer.connect() as conn:
        rows = (await conn.execute(text("SELECT echo_id FROM messages ORDER BY id"))).all()
        indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("messages"))
    assert [r[0] for r in rows] == ["e1", None, None, "e2", None, None]
    assert "messages_sender_echo" in {ix["name"] for ix in indexes}
