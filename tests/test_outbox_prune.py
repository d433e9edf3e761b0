"""Published outbox events are deleted once past OUTBOX_RETENTION (workers/maintenance.py):
oldest first, in bounded chunks, never an event the relay still owes (one its recorded
position does not cover), never the newest (ids must not come back), only by the process
whose relay holds the lease, and on the embedded default too (its relay runs in the web
process, and so does the pruning)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import func, insert, select, text

from server.app import create_app
from server.services import SERVICES
from server.settings import Settings
from server.store import outbox as outbox_store
from server.store.db import Database
from server.store.outbox import Position
from server.store.tables import outbox
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor, build_world, make_settings
from tests.procs import RedisServer
from workers import maintenance as maintenance_module
from workers.lease import MemoryLease, RedisLease
from workers.maintenance import Maintenance, prune_interval

HOUR = 3600.0


async def add_event(db: Database, *, created_at: float) -> int:
    async def op(conn: Any) -> int:
        result = await conn.execute(
            insert(outbox)
            .values(
                conversation_id=None,
                channels=["inbox:1"],
                event="message.created",
                payload="{}",
                created_at=created_at,
            )
            .returning(outbox.c.id)
        )
        return result.scalar_one()

    return await db.write(op)


async def record_published(db: Database) -> None:
    """Record the relay's position as it would after publishing every event committed so far."""

    async def op(conn: Any) -> None:
        if conn.dialect.name == "postgresql":
            snapshot = await conn.execute(text("SELECT pg_current_snapshot()::text"))
            position = Position.parse(snapshot.scalar_one())
        else:
            newest = (await conn.execute(select(func.max(outbox.c.id)))).scalar() or 0
            position = Position.past(newest)
        await outbox_store.save_position(conn, position)

    await db.write(op)


async def outbox_ids(db: Database) -> list[int]:
    async def op(conn: Any) -> list[int]:
        return list((await conn.execute(select(outbox.c.id).order_by(outbox.c.id))).scalars())

    return await db.read(op)


@pytest.fixture
async def db(db_url: str) -> Any:
    database = Database(db_url)
    await database.start()
    yield database
    await database.close()


async def test_prune_deletes_old_published_events_oldest_first(db: Database) -> None:
    now = time.time()
    old = [await add_event(db, created_at=now - 3 * HOUR + i) for i in range(3)]
    recent = await add_event(db, created_at=now - 60)
    await record_published(db)
    owed = await add_event(db, created_at=now - 4 * HOUR)  # committed, not published yet

    assert await db.write(outbox_store.prune, now - HOUR, 2) == 2
    assert await outbox_ids(db) == [old[2], recent, owed]  # the two oldest went first
    assert await db.write(outbox_store.prune, now - HOUR, 2) == 1
    assert await db.write(outbox_store.prune, now - HOUR, 2) == 0
    assert await outbox_ids(db) == [recent, owed]


async def test_prune_keeps_the_newest_event(db: Database) -> None:
    """Even published and past the retention: SQLite would give its id to the next row."""
    now = time.time()
    first, newest = [await add_event(db, created_at=now - 2 * HOUR) for _ in range(2)]
    await record_published(db)
    assert await db.write(outbox_store.prune, now - HOUR, 10) == 1
    assert await outbox_ids(db) == [newest]
    later = await add_event(db, created_at=now)
    assert later > newest > first


async def test_maintenance_prunes_a_backlog_in_chunks(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance_module, "PRUNE_CHUNK", 4)
    now = time.time()
    for i in range(10):
        await add_event(db, created_at=now - 2 * HOUR + i)
    keep = await add_event(db, created_at=now)
    await record_published(db)

    chunks: list[int] = []  # what each write deleted (the real prune runs)
    prune = outbox_store.prune

    async def recorded(conn: Any, created_before: float, limit: int) -> int:
        chunks.append(await prune(conn, created_before, limit))
        return chunks[-1]

    monkeypatch.setattr(outbox_store, "prune", recorded)
    maintenance = Maintenance(db, retention=HOUR, lease=MemoryLease())
    assert await maintenance.run_once() == 10
    assert chunks == [4, 4, 2]
    assert await outbox_ids(db) == [keep]
    assert await maintenance.run_once() == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_only_the_lease_holder_prunes(db: Database, tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    redis = Redis.from_url(redis_server.url)
    try:
        holder, standby = RedisLease(redis), RedisLease(redis)
        # One attempt waits at most a renewal interval (1.7 s): a loaded machine's first
        # connection to a fresh redis-server can take longer, so try until a deadline.
        deadline = time.monotonic() + 20
        while not await holder.acquire():
            assert time.monotonic() < deadline, "the lease was never acquired"
        assert not await standby.acquire()
        now = time.time()
        stale = await add_event(db, created_at=now - 2 * HOUR)
        fresh = await add_event(db, created_at=now)
        await record_published(db)

        assert await Maintenance(db, retention=HOUR, lease=standby).run_once() == 0
        assert await outbox_ids(db) == [stale, fresh]
        assert await Maintenance(db, retention=HOUR, lease=holder).run_once() == 1
        assert await outbox_ids(db) == [fresh]
    finally:
        await redis.aclose()
        redis_server.stop()


def test_prune_interval_follows_the_retention() -> None:
    assert prune_interval(3600) == 60
    assert prune_interval(300) == 30
    assert prune_interval(2) == 1


def test_retention_must_be_positive(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "sqlite:///x.db", "SECRET_KEY_BASE": "s", "DATA_DIR": str(tmp_path)}
    assert Settings.from_env({**env, "OUTBOX_RETENTION": "120"}).outbox_retention == 120
    with pytest.raises(SystemExit, match="OUTBOX_RETENTION must be greater than 0"):
        Settings.from_env({**env, "OUTBOX_RETENTION": "0"})


async def test_embedded_server_prunes_published_events(
    db_url: str, tmp_path: Path, aiohttp_client: Any
) -> None:
    """The default deployment (relay in the web process) deletes what it published once past
    the retention (all but the newest event); the messages themselves stay. A message sent
    after that still reaches a subscribed socket: its event's id is above every earlier one
    (on SQLite too, where the id after the largest left would otherwise come back, and the
    hub would drop it as a duplicate of an event it delivered)."""
    settings = make_settings(db_url, tmp_path, outbox_retention=0.5)
    client: TestClient = await aiohttp_client(create_app(settings))
    db = client.app[SERVICES].db
    world = await build_world(db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    for n in range(3):
        await visitor.send(f"hello {n}")
    await cable.wait_for(lambda _: len(cable.events("message.created")) == 3, 5)
    ids = await outbox_ids(db)
    assert len(ids) > 1, "the messages' events are in the outbox at first"

    deadline = time.monotonic() + 10
    while await outbox_ids(db) != ids[-1:]:
        assert time.monotonic() < deadline, "published events were not pruned"
        await asyncio.sleep(0.2)

    await asyncio.sleep(1.0)  # past the retention: the newest is kept all the same
    assert await outbox_ids(db) == ids[-1:]
    await visitor.send("after the pruning")
    await cable.wait_event("message.created", lambda d: d["content"] == "after the pruning", 5)
    assert max(await outbox_ids(db)) > ids[-1]
    await cable.close()

    resp = await visitor.get("messages")
    assert [m["content"] for m in (await resp.json())["payload"]] == [
        "hello 0",
        "hello 1",
        "hello 2",
        "after the pruning",
    ]
