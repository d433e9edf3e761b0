"""Writes fail fast and are safe to retry (issue 14, §5): with the database frozen, down or
out of disk, every endpoint answers 503 with Retry-After and a one-line JSON error within
DB_TIMEOUT, the outage is logged once (not a traceback per request), and the server serves
again as soon as the database does. A write answered 503 never commits later; where it is in
doubt (a one-statement write the frozen server may run when it wakes), retrying it with the
same echo_id does not write it twice.

PostgreSQL faults run on a throwaway cluster the test starts (tests/pgcluster.py); the full
disk is SQLite's own "database or disk is full", produced with PRAGMA max_page_count."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, func, select

from server.app import create_app
from server.services import SERVICES
from server.settings import Settings
from server.store.tables import messages
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor, World, build_world, make_settings, migrate
from tests.pgcluster import PgCluster

DB_TIMEOUT = 1.0
# What an answer may take beyond DB_TIMEOUT (terminating a connection, the event loop).
MARGIN = 3.0
UNAVAILABLE = {"error": "database unavailable, retry shortly"}
OUTAGE_LOGGER = "server.store.database"


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster().init().start()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
async def pg_client(cluster: PgCluster, tmp_path: Any, aiohttp_client: Any) -> TestClient:
    await migrate(cluster.url())
    settings = make_settings(cluster.url(), tmp_path, db_timeout=DB_TIMEOUT)
    return await aiohttp_client(create_app(settings))


async def answered(call: Awaitable[Any]) -> tuple[Any, float]:
    """(response, seconds it took); a call that hangs fails the test instead of hanging it."""
    started = time.monotonic()
    resp = await asyncio.wait_for(call, DB_TIMEOUT + MARGIN)
    await resp.read()
    return resp, time.monotonic() - started


async def assert_unavailable(call: Awaitable[Any]) -> None:
    resp, took = await answered(call)
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"].isdigit()
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == UNAVAILABLE
    assert took < DB_TIMEOUT + MARGIN


async def until_ok(call: Any, timeout: float = 20.0) -> Any:
    """`call()` again until it answers 200 (each attempt bounded), within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        resp, _ = await answered(call())
        if resp.status == 200:
            return await resp.json()
        assert resp.status == 503, await resp.text()
        assert time.monotonic() < deadline, "the server did not serve again"
        await asyncio.sleep(0.1)


def post_message(visitor: Visitor, content: str, echo_id: str) -> Awaitable[Any]:
    return visitor.post("messages", {"message": {"content": content, "echo_id": echo_id}})


def agent_reply(client: TestClient, world: World, display_id: int, echo_id: str) -> Any:
    return client.post(
        f"/api/v1/accounts/{world.account['id']}/conversations/{display_id}/messages",
        json={"content": "on it", "echo_id": echo_id},
        headers={"api_access_token": world.agent["access_token"]},
    )


async def count_echo(client: TestClient, echo_id: str) -> int:
    async def op(conn: Any) -> int:
        query = select(func.count()).select_from(messages).where(messages.c.echo_id == echo_id)
        return int((await conn.execute(query)).scalar())

    return await client.app[SERVICES].db.read(op)


async def wait_backends(cluster: PgCluster, where: str, done: Any, timeout: float = 10.0) -> None:
    """Until done(number of the cluster's other client backends matching `where`)."""
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres")
    try:
        deadline = time.monotonic() + timeout
        while True:
            n = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                f" AND pid <> pg_backend_pid() AND {where}"
            )
            if done(n):
                return
            assert time.monotonic() < deadline, f"{n} backends where {where}"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def outage_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == OUTAGE_LOGGER and text in r.getMessage()]


def request_tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and r.name.startswith("server")]


def test_db_timeout_is_validated(tmp_path: Any) -> None:
    base = {"DATA_DIR": str(tmp_path), "SECRET_KEY_BASE": "x" * 64}
    assert Settings.from_env(base).db_timeout == 5.0
    assert Settings.from_env({**base, "DB_TIMEOUT": "2.5"}).db_timeout == 2.5
    for bad in ("0", "-1", "0.01", "601", "nan", "inf", "soon"):
        with pytest.raises(SystemExit, match="DB_TIMEOUT"):
            Settings.from_env({**base, "DB_TIMEOUT": bad})


async def test_frozen_postgresql_fails_fast_and_commits_nothing_late(
    pg_client: TestClient, cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    client = pg_client
    caplog.set_level(logging.WARNING)
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    display_id = (await visitor.send("opens the conversation"))["conversation_id"]

    # An agent's reply whose transaction has begun: it waits for the conversation's row
    # lock, held here, when the whole cluster freezes.
    dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    locker = await asyncpg.connect(dsn)
    holding = locker.transaction()
    await holding.start()
    await locker.execute(
        "SELECT 1 FROM conversations WHERE account_id = $1 AND display_id = $2 FOR UPDATE",
        world.account["id"],
        display_id,
    )
    reply = asyncio.ensure_future(answered(agent_reply(client, world, display_id, "agent-frozen")))
    await wait_backends(cluster, "wait_event_type = 'Lock'", lambda n: n >= 1)
    cluster.freeze()
    try:
        resp, took = await reply
        assert resp.status == 503, await resp.text()
        assert resp.headers["Retry-After"].isdigit()
        assert took < DB_TIMEOUT + MARGIN
        # The visitor's message (one statement, no transaction) and a read: 503 as fast.
        await assert_unavailable(post_message(visitor, "while frozen", "echo-frozen"))
        await assert_unavailable(visitor.get("messages"))
        await assert_unavailable(post_message(visitor, "while frozen", "echo-frozen"))
    finally:
        cluster.thaw()
    await holding.rollback()
    await locker.close()

    assert len(outage_lines(caplog, "database unavailable (timeout")) == 1
    await until_ok(lambda: visitor.get("messages"))
    outage = client.app[SERVICES].db.outage
    assert outage.incidents == 1 and outage.timeouts >= 4
    assert not request_tracebacks(caplog)

    # The agent's reply was in a transaction whose COMMIT was never sent: once the woken
    # backends are done, it is not there.
    await wait_backends(cluster, "state <> 'idle'", lambda n: n == 0)
    assert await count_echo(client, "agent-frozen") == 0
    # The visitor's one-statement write is in doubt (the woken server may have run it); its
    # retry answers the message, and there is one.
    retried = await until_ok(lambda: post_message(visitor, "while frozen", "echo-frozen"))
    assert retried["content"] == "while frozen"
    # Writes failed, so a write (not the reads before it) ends the incident.
    assert len(outage_lines(caplog, "database available again")) == 1
    assert await count_echo(client, "echo-frozen") == 1
    again = await until_ok(lambda: post_message(visitor, "while frozen", "echo-frozen"))
    assert again["id"] == retried["id"]
    # And the reply, retried, is written once.
    reply = await until_ok(lambda: agent_reply(client, world, display_id, "agent-frozen"))
    assert await count_echo(client, "agent-frozen") == 1
    assert reply["content"] == "on it"


async def test_postgresql_down_is_503_not_500(
    pg_client: TestClient, cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    client = pg_client
    caplog.set_level(logging.WARNING)
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    display_id = (await visitor.send("opens the conversation"))["conversation_id"]

    cluster.stop()
    for i in range(3):
        await assert_unavailable(post_message(visitor, "while down", f"down-{i}"))
        await assert_unavailable(agent_reply(client, world, display_id, f"agent-down-{i}"))
        await assert_unavailable(visitor.get("messages"))
    # A socket subscribing meanwhile is told to reconnect (and then catches up), not left
    # hanging or cut without a word.
    sock = await CableClient.connect(client)
    assert visitor.pubsub_token is not None
    await sock.send(
        {"command": "subscribe", "identifier": visitor_identifier(visitor.pubsub_token)}
    )
    bye = await sock.wait_for(lambda f: f.get("type") == "disconnect", DB_TIMEOUT + MARGIN)
    assert bye["reconnect"] is True
    await sock.close()
    assert len(outage_lines(caplog, "database unavailable")) == 1
    assert not request_tracebacks(caplog)
    outage = client.app[SERVICES].db.outage
    assert outage.incidents == 1 and outage.failures >= 10

    cluster.start()
    await until_ok(lambda: post_message(visitor, "back", "back-1"))
    assert len(outage_lines(caplog, "database available again")) == 1
    assert not request_tracebacks(caplog)


@pytest.fixture
async def sqlite_client(tmp_path: Any, aiohttp_client: Any) -> TestClient:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'full.db'}", tmp_path, db_timeout=DB_TIMEOUT
    )
    return await aiohttp_client(create_app(settings))


async def test_sqlite_disk_full_is_503_and_recovers(
    sqlite_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = sqlite_client
    caplog.set_level(logging.WARNING)
    db = client.app[SERVICES].db
    world = await build_world(db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    await visitor.send("opens the conversation")

    # Every connection the writer opens may not grow the file past its size now: the disk
    # is full for the writer, as it would be on a full volume.
    full = {"on": True}

    def limit(dbapi_conn: Any, _: Any) -> None:
        if full["on"]:
            raw = dbapi_conn.driver_connection._conn
            pages = raw.execute("PRAGMA page_count").fetchone()[0]
            raw.execute(f"PRAGMA max_page_count = {pages}").close()

    event.listen(db.writer.sync_engine, "connect", limit)

    async def set_limit(conn: Any, on: bool) -> None:
        raw = conn.sync_connection.connection.driver_connection._conn
        pages = raw.execute("PRAGMA page_count").fetchone()[0]
        raw.execute(f"PRAGMA max_page_count = {pages if on else 1073741823}").close()

    await db.write(set_limit, True)
    statuses = []
    for i in range(200):  # until the pages the file has are used up
        resp, _ = await answered(post_message(visitor, "x" * 2000, f"full-{i}"))
        statuses.append(resp.status)
        if resp.status != 200:
            break
    assert statuses[-1] == 503, statuses
    assert resp.headers["Retry-After"].isdigit()
    assert await resp.json() == UNAVAILABLE
    for i in range(3):
        await assert_unavailable(post_message(visitor, "x" * 2000, f"still-{i}"))
    assert len(outage_lines(caplog, "database unavailable (disk full")) == 1
    assert not request_tracebacks(caplog)
    assert db.outage.disk_full >= 4

    # Space again: the next write goes through and the recovery is logged.
    full["on"] = False
    await db.write(set_limit, False)
    written = await until_ok(lambda: post_message(visitor, "space again", "space-1"))
    assert written["content"] == "space again"
    assert len(outage_lines(caplog, "database available again")) == 1


async def test_sqlite_lock_held_elsewhere_is_503_within_the_deadline(
    sqlite_client: TestClient, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds SQLite's write lock (a backup, a tool, a stuck process): the
    group commit waits for it only until DB_TIMEOUT, and what it did not write is not
    written later."""
    client = sqlite_client
    caplog.set_level(logging.WARNING)
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    await visitor.send("opens the conversation")

    other = sqlite3.connect(tmp_path / "full.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        await assert_unavailable(post_message(visitor, "locked out", "locked-1"))
        await assert_unavailable(post_message(visitor, "locked out", "locked-2"))
        assert len(outage_lines(caplog, "database unavailable (timeout")) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await count_echo(client, "locked-1") == 0
    written = await until_ok(lambda: post_message(visitor, "locked out", "locked-1"))
    assert written["content"] == "locked out"
    assert await count_echo(client, "locked-1") == 1
    assert await count_echo(client, "locked-2") == 0
    assert not request_tracebacks(caplog)
