"""Schema migrations (issue 16 item 4), on SQLite and PostgreSQL: migrating an empty database
gives exactly schema.sql, and exactly the metadata of server/store/tables.py; a database
made before migrations (by schema.sql at start, today's or an older one) is upgraded with
its data and keeps working; a database behind the code is refused at start with one line
saying what to run (and the embedded default migrates itself); concurrent migrations do
not race."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from server.app import create_app
from server.store import migrate
from server.store.db import Database, safe_database_url
from server.store.migrate import SchemaNotCurrent
from server.store.tables import metadata
from tests.conftest import SECRET, make_settings, temp_pg_database
from tests.procs import ROOT

BASELINE = importlib.import_module("server.store.migrations.versions.0001_baseline")


def schema_sql(dialect: str) -> list[str]:
    """schema.sql's statements, spelled for `dialect` as its header says."""
    sql = (ROOT / "schema.sql").read_text()
    sql = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    if dialect == "sqlite":
        sql = sql.replace("BIGSERIAL PRIMARY KEY", "INTEGER NOT NULL PRIMARY KEY")
        sql = sql.replace(" DEFAULT (pg_current_xact_id()::text::bigint)", "")
    return [stmt.strip() for stmt in re.split(r";\s*(?:\n|$)", sql) if stmt.strip()]


def pre_migration_ddl(dialect: str) -> list[str]:
    """What every start of a version before migrations applied: the baseline's DDL, with
    the primary key spelled as its loader spelled it for SQLite."""
    return [
        stmt.replace("INTEGER NOT NULL PRIMARY KEY", "INTEGER PRIMARY KEY")
        for stmt in BASELINE.statements(dialect)
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with nothing in it."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    async with temp_pg_database(migrated=False) as url:
        yield url


async def execute(url: str, statements: list[str], params: dict[str, Any] | None = None) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for stmt in statements:
                await conn.execute(text(stmt), params or {})
    finally:
        await engine.dispose()


async def run_sync(url: str, fn: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _where(options: dict[str, Any]) -> str:
    clause = options.get("sqlite_where")
    if clause is None:
        clause = options.get("postgresql_where")
    return (
        "" if clause is None else " ".join(str(clause).replace("(", " ").replace(")", " ").split())
    )


def reflected(sync: Any) -> dict[str, Any]:
    """Everything about the tables a test can hold two databases to: columns (type,
    nullability, default; not their order), keys, foreign keys, unique constraints, indexes
    with their WHERE."""
    insp = inspect(sync)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        if table == "alembic_version":
            continue
        pk = insp.get_pk_constraint(table)["constrained_columns"]
        out[table] = {
            # A key column is never null on either engine (SQLite only says so when told).
            # By name: a column a migration adds comes last (ALTER TABLE ADD COLUMN, on both
            # engines), wherever schema.sql lists it; nothing reads columns by position.
            "columns": {
                c["name"]: (
                    str(c["type"]),
                    bool(c["nullable"]) and c["name"] not in pk,
                    str(c["default"]),
                )
                for c in insp.get_columns(table)
            },
            "pk": pk,
            "fks": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                )
                for fk in insp.get_foreign_keys(table)
            ),
            "unique": sorted(
                (tuple(u["column_names"]), u["name"] or "")
                for u in insp.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (
                    ix["name"],
                    tuple(ix["column_names"]),
                    bool(ix["unique"]),
                    _where(ix.get("dialect_options", {})),
                )
                for ix in insp.get_indexes(table)
            ),
        }
    return out


async def schema_sql_reference(url: str, tmp_path: Path) -> dict[str, Any]:
    """The schema schema.sql makes, on a database of the same engine as `url`."""
    if url.startswith("sqlite"):
        ref = f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}"
        await execute(ref, schema_sql("sqlite"))
        return await run_sync(ref, reflected)
    async with temp_pg_database(migrated=False) as ref:
        await execute(ref, schema_sql("postgresql"))
        return await run_sync(ref, reflected)


async def migrated(url: str) -> migrate.SchemaState:
    db = Database(url)
    try:
        return await db.migrate()
    finally:
        await db.close()


async def test_migrating_an_empty_database_gives_exactly_schema_sql(
    empty_url: str, tmp_path: Path
) -> None:
    before = await migrated(empty_url)
    assert before.current == () and not before.has_tables
    assert await run_sync(empty_url, reflected) == await schema_sql_reference(empty_url, tmp_path)
    again = await migrated(empty_url)  # and again: nothing to do
    assert again.current == (migrate.head(),) and again.up_to_date


async def test_the_metadata_is_the_migrated_schema(empty_url: str) -> None:
    """tables.py (what queries and `new-migration` use) against a migrated database:
    Alembic's autogenerate finds nothing to change, and partial indexes have the same WHERE."""
    await migrated(empty_url)

    def differences(sync: Any) -> list[Any]:
        return compare_metadata(
            MigrationContext.configure(sync, opts=migrate.CONTEXT_OPTIONS), metadata
        )

    assert await run_sync(empty_url, differences) == []
    actual = await run_sync(empty_url, reflected)
    for table in metadata.sorted_tables:
        for index in table.indexes:
            options = {k: v for k, v in index.dialect_kwargs.items() if k.endswith("_where")}
            expected = _where(options).lower()
            found = next(ix for ix in actual[table.name]["indexes"] if ix[0] == index.name)
            assert found[3].lower() == expected, index.name


# --- a database made before migrations, with data in it


async def seed_pre_migration(url: str, retried: bool) -> dict[str, Any]:
    """A small world in raw SQL, as the server of that time wrote it: an account, an
    administrator agent, an inbox, a visitor with a conversation of three messages and an
    event; with `retried`, the second message twice with the same echo_id (a retry, written
    twice before the echo index)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:

            async def insert(sql: str, **params: Any) -> int:
                return (await conn.execute(text(sql + " RETURNING id"), params)).scalar_one()

            account = await insert(
                "INSERT INTO accounts (name, conversation_seq, created_at) VALUES ('Old', 1, 1)"
            )
            agent = await insert(
                "INSERT INTO users (name, email, access_token, pubsub_token, created_at)"
                " VALUES ('Ann', 'ann@old.test', 'old-agent-token-0123456789', 'ps-ann', 1)"
            )
            await conn.execute(
                text("INSERT INTO account_users VALUES (:a, :u, 'administrator')"),
                {"a": account, "u": agent},
            )
            inbox = await insert(
                "INSERT INTO inboxes (account_id, name, website_token, hmac_token, created_at)"
                " VALUES (:a, 'Old site', 'old-website-token', 'old-hmac', 1)",
                a=account,
            )
            await conn.execute(
                text("INSERT INTO inbox_members VALUES (:i, :u)"), {"i": inbox, "u": agent}
            )
            contact = await insert(
                "INSERT INTO contacts (account_id, name, created_at, updated_at)"
                " VALUES (:a, 'Visitor', 1, 1)",
                a=account,
            )
            ci = await insert(
                "INSERT INTO contact_inboxes (contact_id, inbox_id, source_id, pubsub_token,"
                " created_at, updated_at) VALUES (:c, :i, 'src-1', 'ps-visitor', 1, 1)",
                c=contact,
                i=inbox,
            )
            conv = await insert(
                "INSERT INTO conversations (account_id, inbox_id, display_id, contact_id,"
                " contact_inbox_id, last_activity_at, created_at, updated_at)"
                " VALUES (:a, :i, 1, :c, :ci, 3, 1, 3)",
                a=account,
                i=inbox,
                c=contact,
                ci=ci,
            )
            sent = [("one", "e1"), ("two", "e2"), ("two", "e2"), ("three", None)]
            if not retried:
                del sent[2]
            for n, (content, echo) in enumerate(sent, start=1):
                await conn.execute(
                    text(
                        "INSERT INTO messages (account_id, inbox_id, conversation_id,"
                        " message_type, content, sender_type, sender_id, echo_id,"
                        " created_at, updated_at)"
                        " VALUES (:a, :i, :cv, 0, :content, 'Contact', :c, :e, :t, :t)"
                    ),
                    {
                        "a": account,
                        "i": inbox,
                        "cv": conv,
                        "content": content,
                        "c": contact,
                        "e": echo,
                        "t": n,
                    },
                )
            await conn.execute(
                text(
                    "INSERT INTO outbox (conversation_id, channels, event, payload, created_at,"
                    " published_at) VALUES (:cv, '[]', 'message.created', '{}', 1, 2)"
                ),
                {"cv": conv},
            )
    finally:
        await engine.dispose()
    return {"account": account, "agent_token": "old-agent-token-0123456789"}


async def agent_messages(client: TestClient, seeded: dict[str, Any]) -> list[str]:
    url = f"/api/v1/accounts/{seeded['account']}/conversations/1/messages"
    resp = await client.get(url, headers={"api_access_token": seeded["agent_token"]})
    assert resp.status == 200, await resp.text()
    return [m["content"] for m in (await resp.json())["payload"]]


@pytest.mark.parametrize("made_by", ["today", "before identifier_verified and echo index"])
async def test_a_database_made_before_migrations_is_upgraded_with_its_data(
    empty_url: str, tmp_path: Path, aiohttp_client: Any, made_by: str
) -> None:
    dialect = "sqlite" if empty_url.startswith("sqlite") else "postgresql"
    await execute(empty_url, pre_migration_ddl(dialect))
    if made_by != "today":
        await execute(
            empty_url,
            [
                "DROP INDEX contacts_verified_identifier",
                "DROP INDEX messages_sender_echo",
                "ALTER TABLE contacts DROP COLUMN identifier_verified",
            ],
        )
    seeded = await seed_pre_migration(empty_url, retried=made_by != "today")

    db = Database(empty_url, auto_migrate=False)
    with pytest.raises(SchemaNotCurrent, match="made before schema migrations") as refused:
        await db.start()
    await db.close()
    assert "run `python -m server migrate`" in str(refused.value)

    before = await migrated(empty_url)
    assert before.current == () and before.has_tables
    assert await run_sync(empty_url, reflected) == await schema_sql_reference(empty_url, tmp_path)

    async def echo_ids(conn: AsyncConnection) -> list[str | None]:
        return [r[0] for r in await conn.execute(text("SELECT echo_id FROM messages ORDER BY id"))]

    engine = create_async_engine(empty_url)
    async with engine.connect() as conn:
        echoes = await echo_ids(conn)
    await engine.dispose()
    # The retry written twice before the echo index keeps its content, not its echo_id.
    assert echoes == (["e1", "e2", None] if made_by == "today" else ["e1", "e2", None, None])
    contents = ["one", "two", "three"] if made_by == "today" else ["one", "two", "two", "three"]

    # The server runs on it: the agent reads the old conversation and replies.
    client = await aiohttp_client(
        create_app(make_settings(empty_url, tmp_path, auto_migrate=False))
    )
    assert await agent_messages(client, seeded) == contents
    url = f"/api/v1/accounts/{seeded['account']}/conversations/1/messages"
    reply = await client.post(
        url, json={"content": "still here"}, headers={"api_access_token": seeded["agent_token"]}
    )
    assert reply.status == 200, await reply.text()
    assert (await agent_messages(client, seeded))[-1] == "still here"


async def test_identifier_verified_is_backfilled_on_an_older_database(empty_url: str) -> None:
    """A contact counts as verified where every identity of it was HMAC-verified, one per
    identifier (the oldest): a contact taken over by an unverified claim stays unverified."""
    dialect = "sqlite" if empty_url.startswith("sqlite") else "postgresql"
    await execute(empty_url, pre_migration_ddl(dialect))
    await execute(
        empty_url,
        [
            "DROP INDEX contacts_verified_identifier",
            "ALTER TABLE contacts DROP COLUMN identifier_verified",
            "INSERT INTO accounts (name, created_at) VALUES ('Old', 0)",
            "INSERT INTO inboxes (account_id, name, website_token, hmac_token, created_at)"
            " VALUES (1, 'Old', 'wt', 'h', 0)",
        ],
    )
    rows = [  # (identifier, [hmac_verified of each contact_inbox]) -> verified after
        ("taken-over", [False, True], False),
        ("legit", [True], True),
        ("legit", [True], False),  # the younger of two: the unique index allows one
        ("claimed", [False], False),
        (None, [True], False),
    ]
    n = 0
    for number, (identifier, verified, _) in enumerate(rows, start=1):
        statements = [
            "INSERT INTO contacts (account_id, name, identifier, created_at, updated_at)"
            " VALUES (1, '', :ident, :n, 0)"
        ]
        params: dict[str, Any] = {"ident": identifier, "n": number}
        for v in verified:
            n += 1
            statements.append(
                "INSERT INTO contact_inboxes (contact_id, inbox_id, source_id, pubsub_token,"
                f" hmac_verified, created_at, updated_at) VALUES ((SELECT id FROM contacts"
                f" WHERE created_at = :n), 1, 's-{n}', 'p-{n}', {'TRUE' if v else 'FALSE'}, 0, 0)"
            )
        await execute(empty_url, statements, params)
    await migrated(empty_url)

    def verified(sync: Any) -> list[bool]:
        found = sync.execute(text("SELECT identifier_verified FROM contacts ORDER BY created_at"))
        return [bool(r[0]) for r in found]

    assert await run_sync(empty_url, verified) == [expected for *_, expected in rows]


# --- a database behind (or ahead of) the code


NEXT_REVISION = '''"""A revision after this version's (tests/test_migrations.py)."""

import sqlalchemy as sa
from alembic import op

revision = "{next}"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("attempts")
'''


@pytest.fixture
def newer_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This code with one more revision (as when a branch adds one): the real migrations
    directory, copied, plus one more revision adding a column."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrate.head()
    nxt = f"{int(head.split('_')[0]) + 1:04d}"  # "0006_voice_calls": 0007
    (copy / "versions" / f"{nxt}_attempts.py").write_text(
        NEXT_REVISION.replace("{next}", nxt).replace("{head}", head)
    )
    migrate.scripts.cache_clear()
    monkeypatch.setattr(migrate, "MIGRATIONS", copy)
    try:
        yield
    finally:
        monkeypatch.undo()
        migrate.scripts.cache_clear()


async def test_a_database_behind_the_code_is_refused_until_migrated(
    empty_url: str, newer_code: None
) -> None:
    sqlite = empty_url.startswith("sqlite")
    nxt = migrate.head()
    # This code's own head, before the added revision (whose down_revision names it).
    head = migrate.scripts().get_revision(nxt).down_revision
    db = Database(empty_url)
    await db.migrate(target=head)  # what the previous version left
    await db.close()
    await execute(empty_url, ["INSERT INTO accounts (name, created_at) VALUES ('Kept', 1)"])

    refusing = Database(empty_url, auto_migrate=False)
    with pytest.raises(SchemaNotCurrent) as refused:
        await refusing.start()
    await refusing.close()
    assert str(refused.value) == (
        f"the database at {safe_database_url(empty_url)} is at schema revision {head}, this"
        f" version needs {nxt}: run `python -m server migrate` (with the same DATABASE_URL),"
        " then start again"
    )

    # The default: SQLite (the embedded database) migrates itself; PostgreSQL refuses.
    default = Database(empty_url)
    try:
        if sqlite:
            await default.start()
        else:
            with pytest.raises(SchemaNotCurrent):
                await default.start()
            assert (await default.migrate()).current == (head,)  # `python -m server migrate`
            await default.start()

        async def kept(conn: AsyncConnection) -> tuple[list[str], set[str]]:
            names = [r[0] for r in await conn.execute(text("SELECT name FROM accounts"))]
            cols = await conn.run_sync(lambda s: inspect(s).get_columns("outbox"))
            return names, {c["name"] for c in cols}

        names, outbox_columns = await default.read(kept)
        assert names == ["Kept"] and "attempts" in outbox_columns
    finally:
        await default.close()


async def test_a_database_ahead_of_the_code_is_refused(empty_url: str) -> None:
    await migrated(empty_url)
    await execute(empty_url, ["UPDATE alembic_version SET version_num = '9999'"])
    for auto in (False, True):
        db = Database(empty_url, auto_migrate=auto)
        with pytest.raises(SchemaNotCurrent, match="at schema revision 9999, which this version"):
            await db.start()
        await db.close()


async def test_concurrent_migrations_do_not_race(empty_url: str) -> None:
    """Several processes starting at once on an empty database (AUTO_MIGRATE), or two
    `migrate` commands: one migrates, the others wait for it and find nothing to do."""
    dbs = [Database(empty_url, auto_migrate=True) for _ in range(3)]
    try:
        await asyncio.gather(*(db.start() for db in dbs))
    finally:
        for db in dbs:
            await db.close()
    states = await asyncio.gather(migrated(empty_url), migrated(empty_url))
    assert all(s.up_to_date for s in states)


async def test_the_commands_on_postgresql(tmp_path: Path) -> None:
    """On PostgreSQL: a process on an unmigrated database stops with one line and status 2;
    `migrate --check` says so; `migrate` migrates; then both are content."""
    async with temp_pg_database(migrated=False) as url:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SECRET_KEY_BASE": SECRET,
            "DATABASE_URL": url,
            "DATA_DIR": str(tmp_path),
            "PORT": "39998",
        }

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        for args in (("server",), ("workers",), ("server", "migrate", "--check")):
            proc = run(*args)
            assert proc.returncode == 2, (args, proc.stderr)
            errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
            assert len(errors) == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)
            assert "has no schema yet: run `python -m server migrate`" in errors[0]
        proc = run("server", "migrate")
        assert proc.returncode == 0, proc.stderr
        assert f"migrated from empty to {migrate.head()}" in proc.stderr
        proc = run("server", "migrate", "--check")
        assert proc.returncode == 0, proc.stderr
        assert f"is at schema revision {migrate.head()}" in proc.stderr
