"""Issue 14 item 6: the relay records how far it has published as one position (a row of
relay_state, server/store/outbox.py `Position`), never by writing to the outbox rows. Real
relays, a real Redis, real HTTP writes and a real /cable socket, on both databases:

- the relay never updates an outbox row;
- a relay that takes over (after a clean stop, or after one that died without recording)
  publishes what the old one did not, and repeats only what that one published after its
  last recording (the hub drops those: each message reaches the socket once, in order);
- PostgreSQL: an event whose transaction commits after a later one's (a lower id committing
  last) is not covered by any position before it commits, and is published after;
- PostgreSQL: through a backlog the position moves on a page of rows at a time, and lists
  the transactions whose rows it has not published as in flight;
- PostgreSQL: a position from another cluster (a restored dump) neither prunes nor hides
  new events: the relay starts over;
- an existing database (rows marked with published_at) upgrades: the relay publishes what
  was not marked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import MetaData, insert, inspect, select, text

from server import events
from server.lifecycle import cancel
from server.services import SERVICES
from server.settings import Settings
from server.store import migrate, relay_position
from server.store import outbox as outbox_store
from server.store.db import Database
from server.store.outbox import INITIAL, Position
from server.store.tables import outbox
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor, make_settings
from tests.procs import RedisServer
from tests.test_relay_faults import Relays, received_once_in_order, until
from workers import relay as relay_module
from workers.listener import asyncpg_dsn
from workers.relay import Relay

on_postgresql = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def settings(db_url: str, tmp_path: Path, redis_server: RedisServer) -> Settings:
    # The web app publishes nothing durable itself: the relays the tests start do.
    return make_settings(db_url, tmp_path, redis_url=redis_server.url, run_relay=False)


@pytest.fixture
async def relays(settings: Settings) -> AsyncIterator[Relays]:
    relays = Relays(settings.database_url, settings.redis_url or "")
    yield relays
    await relays.close()


async def owed(db: Database) -> list[int]:
    """Ids of the rows the recorded position does not cover."""
    return [row["id"] for row in await db.read(outbox_store.unpublished, 10_000)]


async def all_recorded(db: Database, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while await owed(db):
        assert time.monotonic() < deadline, "the relay did not record its position"
        await asyncio.sleep(0.02)


async def count_updates(db: Database) -> None:
    """A trigger that counts every UPDATE of an outbox row, committed or not (PostgreSQL: a
    sequence, which a rollback does not undo)."""

    async def op(conn: Any) -> None:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("CREATE SEQUENCE outbox_updates")
            await conn.exec_driver_sql(
                "CREATE FUNCTION count_outbox_update() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM nextval('outbox_updates'); RETURN NEW; END $$"
            )
            await conn.exec_driver_sql(
                "CREATE TRIGGER outbox_updated BEFORE UPDATE ON outbox"
                " FOR EACH ROW EXECUTE FUNCTION count_outbox_update()"
            )
        else:
            await conn.exec_driver_sql("CREATE TABLE outbox_updates (n INTEGER)")
            await conn.exec_driver_sql(
                "CREATE TRIGGER outbox_updated BEFORE UPDATE ON outbox"
                " BEGIN INSERT INTO outbox_updates VALUES (1); END"
            )

    await db.write(op)


async def updates_counted(db: Database) -> int:
    async def op(conn: Any) -> int:
        if conn.dialect.name == "postgresql":
            row = (
                await conn.exec_driver_sql("SELECT last_value, is_called FROM outbox_updates")
            ).one()
            return int(row[0]) if row[1] else 0
        return int((await conn.exec_driver_sql("SELECT count(*) FROM outbox_updates")).scalar())

    return await db.read(op)


async def test_the_relay_never_updates_an_outbox_row(
    client: TestClient, visitor: Visitor, relays: Relays, db_url: str
) -> None:
    db = client.app[SERVICES].db
    await count_updates(db)
    relay = await relays.start()
    await until(lambda: relay.lease.held, 5, "the relay takes the lease")
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    sent = [(await visitor.send(f"m{i:02d}"))["content"] for i in range(20)]
    await received_once_in_order(cable, sent, timeout=5)
    await all_recorded(db)
    await relay.stop()  # and its last recording

    assert relay.published >= 20 and relay.recorded >= 1
    assert await updates_counted(db) == 0
    if db_url.startswith("postgresql"):
        # PostgreSQL's own counters, once they hold the inserts (reported up to ~1 s late).
        admin = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            query = "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'outbox'"
            deadline = time.monotonic() + 15
            while (row := await admin.fetchrow(query))["n_tup_ins"] < 20:
                assert time.monotonic() < deadline, f"statistics not reported: {dict(row)}"
                await asyncio.sleep(0.2)
            assert row["n_tup_upd"] == 0
        finally:
            await admin.close()
    await cable.close()


async def test_takeover_after_a_clean_stop(
    client: TestClient, visitor: Visitor, relays: Relays
) -> None:
    db = client.app[SERVICES].db
    first = await relays.start()
    await until(lambda: first.lease.held, 5, "the first relay takes the lease")
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    sent = [(await visitor.send(f"before {i}"))["content"] for i in range(5)]
    await received_once_in_order(cable, sent, timeout=5)
    await first.stop()  # records its position and hands the lease back

    sent += [(await visitor.send(f"between {i}"))["content"] for i in range(5)]
    assert len(await owed(db)) == 5  # nobody publishes them meanwhile
    second = await relays.start()
    await received_once_in_order(cable, sent, timeout=5)
    assert second.published == 5  # exactly what the first did not publish
    await cable.close()


async def crash(relay: Relay) -> None:
    """The relay's process dies: no last recording, the lease is left to expire."""
    await cancel(relay._task)
    await cancel(relay._mark_task)
    await cancel(getattr(relay.lease, "_task", None))
    if relay.listener is not None:
        await relay.listener.close()
    relay._stopping = True  # (Relays.close stops it again: nothing is left to record)
    relay._unmarked, relay._unrecorded = [], set()
    # A write the cancelled task had handed over may still commit: let it, before counting.
    await relay.db.write(_nothing)


async def _nothing(conn: Any) -> None:
    return None


async def test_takeover_after_a_crash_repeats_only_what_was_not_recorded(
    client: TestClient, visitor: Visitor, relays: Relays, db_url: str
) -> None:
    db = client.app[SERVICES].db
    # A lease of 4 s: the standby must not take over before the crash, which a 1 s lease let
    # it do when a loaded machine held up the holder's renewals (then it published all).
    first = await relays.start(ttl=4.0)
    await until(lambda: first.lease.held, 5, "the first relay takes the lease")
    second = await relays.start(ttl=4.0)
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    sent = [(await visitor.send(f"recorded {i}"))["content"] for i in range(5)]
    await received_once_in_order(cable, sent, timeout=5)
    await all_recorded(db)
    if first.listener is not None:
        # PostgreSQL: the position is recorded in the background; stop that first, so that
        # the next three are published and never recorded.
        await cancel(first._mark_task)
    sent += [(await visitor.send(f"unrecorded {i}"))["content"] for i in range(3)]
    await received_once_in_order(cable, sent, timeout=5)
    await crash(first)
    repeated = len(await owed(db))
    if first.listener is not None:
        assert repeated == 3
    assert repeated <= 3  # SQLite records each batch with the next read: maybe all three

    assert second.published == 0, "the standby took over before the crash"
    sent += [(await visitor.send(f"after {i}"))["content"] for i in range(3)]
    await until(lambda: second.lease.held, 15, "the standby takes over")
    await received_once_in_order(cable, sent, timeout=10)
    assert second.published == repeated + 3
    await all_recorded(db)
    await cable.close()


async def _begin_unnotified_event(
    admin: asyncpg.Connection, pubsub_token: str, content: str
) -> tuple[int, int]:
    """In the open transaction of `admin`: an event for the visitor, without a notification
    (as one lost, or committed while the relay did not listen). Returns (id, xid)."""
    data = {"content": content, "account_id": 1}
    row = await admin.fetchrow(
        "INSERT INTO outbox (conversation_id, channels, event, payload, created_at)"
        " VALUES (NULL, $1, $2, $3, $4) RETURNING id, xid",
        f'["{events.contact_channel(pubsub_token)}"]',
        events.MESSAGE_CREATED,
        outbox_store.encode_message(events.MESSAGE_CREATED, data).decode(),
        time.time(),
    )
    return row["id"], row["xid"]


@on_postgresql
async def test_an_event_committed_after_a_later_one_is_published(
    client: TestClient, visitor: Visitor, relays: Relays, db_url: str, monkeypatch: Any
) -> None:
    """Two transactions: the first draws the lower outbox id and commits last. A watermark
    of ids would pass over it; the position lists its transaction as in flight until it
    commits, and the relay's sweep (the table read for rows without a notification) then
    finds it."""
    monkeypatch.setattr(relay_module, "SWEEP_AGE", 0.3)
    db = client.app[SERVICES].db
    relay = await relays.start()
    await until(lambda: relay.lease.held, 5, "the relay takes the lease")
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    admin = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        tx = admin.transaction()
        await tx.start()
        early_id, early_xid = await _begin_unnotified_event(
            admin, visitor.pubsub_token or "", "first id, committed last"
        )
        await visitor.send("second id, committed first")
        await cable.wait_event("message.created", lambda d: d["content"].startswith("second"))
        await all_recorded(db)  # the later event is covered...
        position = await db.read(outbox_store.load_position)
        later = [row for row in await db.read(_outbox_rows) if row["id"] > early_id]
        assert later and all(position.covers(row["xid"]) for row in later)
        assert not position.covers(early_xid)  # ...the earlier one is not
        await tx.commit()

        assert await owed(db) == [early_id]  # where a relay taking over would find it
        await cable.wait_event("message.created", lambda d: d["content"].startswith("first"))
        await all_recorded(db)
        contents = [e["data"]["content"] for e in cable.events("message.created")]
        assert contents == ["second id, committed first", "first id, committed last"]
    finally:
        await admin.close()
    await cable.close()


@on_postgresql
async def test_a_position_from_another_cluster(
    client: TestClient, visitor: Visitor, relays: Relays
) -> None:
    """A dump restored into another cluster keeps relay_state and the rows' xid values, not
    the cluster's transaction ids: the recorded position is past them, and would take every
    new event for published. Nothing is pruned on it, and the relay starts over (publishing
    what the outbox holds once more) instead of publishing nothing."""
    db = client.app[SERVICES].db

    async def restore(conn: Any) -> None:
        snapshot = (await conn.execute(text("SELECT pg_current_snapshot()::text"))).scalar_one()
        ahead = Position.parse(snapshot).xmax + 10**9
        await outbox_store.save_position(conn, Position(ahead, ahead))

    await db.write(restore)
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    sent = [(await visitor.send(f"after the restore {i}"))["content"] for i in range(3)]
    assert await db.write(outbox_store.prune, time.time() + 60, 1000) == 0
    assert len(await owed(db)) >= 3

    relay = await relays.start()
    await received_once_in_order(cable, sent, timeout=5)
    await all_recorded(db)
    assert (await db.read(outbox_store.load_position)).xmax < 10**9
    assert relay.published >= 3
    await cable.close()


async def _outbox_rows(conn: Any) -> list[dict[str, Any]]:
    result = await conn.execute(select(outbox.c.id, outbox.c.xid).order_by(outbox.c.id))
    return [dict(row._mapping) for row in result]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()
    yield database
    await database.close()


async def _add(conn: Any, n: int = 1) -> list[int]:
    ids = []
    for _ in range(n):
        result = await conn.execute(
            insert(outbox)
            .values(
                conversation_id=None,
                channels=["inbox:1"],
                event="message.created",
                payload="{}",
                created_at=time.time(),
            )
            .returning(outbox.c.id)
        )
        ids.append(result.scalar_one())
    return ids


@on_postgresql
async def test_the_position_moves_on_a_page_at_a_time(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_position, "KEY_PAGE", 3)
    ids = [i for _ in range(7) for i in await db.write(_add)]  # a transaction each
    ids += await db.write(_add, 5)  # one transaction, more rows than a page

    # Nothing published: every transaction is listed as in flight, nothing is covered.
    position, covered = await db.write(outbox_store.advance, INITIAL, set())
    assert covered == set()
    assert await owed(db) == ids
    xids = {row["xid"] for row in await db.read(_outbox_rows)}
    passed = {xid for xid in xids if xid < position.xmax}
    assert passed and passed <= position.xip  # moved on past them, listed as in flight

    # Everything published: covered a page at a time (each round stops at a transaction
    # boundary), the last round past the five-row transaction too.
    rounds, position, left = 0, INITIAL, set(ids)
    while left:
        position, covered = await db.write(outbox_store.advance, position, left)
        assert covered, "a round that covers nothing"
        left -= covered
        rounds += 1
    assert rounds >= 3
    assert await owed(db) == []


def test_position_text() -> None:
    position = Position.parse("10:20:12,15")
    assert position == Position(10, 20, frozenset({12, 15}))
    assert str(position) == "10:20:12,15"
    assert Position.parse("7:7:") == Position.past(6)
    assert position.covers(9) and position.covers(13) and position.covers(19)
    assert not position.covers(12) and not position.covers(20)
    for bad in ("", "1:2", "a:b:", "5:3:", "1:5:5", "1:5:0", "-1:5:"):
        with pytest.raises(ValueError, match="not a relay position"):
            Position.parse(bad)


def _reflected(sync: Any) -> MetaData:
    tables = MetaData()
    tables.reflect(sync)
    return tables


async def test_an_existing_database_upgrades(db: Database, db_url: str) -> None:
    published = [True, False, True, False, True]

    async def make_legacy(conn: Any) -> list[int]:
        # The database as revision 0001 left it, outbox rows marked published_at or not:
        # built from nothing, so revisions after 0001 need no care here.
        await conn.run_sync(lambda sync: _reflected(sync).drop_all(sync))
        await migrate.upgrade(conn, "test", "0001")
        ids = []
        for done in published:
            result = await conn.execute(
                text(
                    "INSERT INTO outbox (channels, event, payload, created_at, published_at)"
                    " VALUES ('[\"inbox:1\"]', 'message.created', '{}', 1, :p) RETURNING id"
                ),
                {"p": 2.0 if done else None},
            )
            ids.append(result.scalar_one())
        return ids

    ids = await db.write(make_legacy)
    for _ in range(2):  # the second time changes nothing
        async with db.writer.begin() as conn:
            await migrate.upgrade(conn, "test")

    not_marked = [i for i, done in zip(ids, published, strict=True) if not done]
    if db_url.startswith("postgresql"):
        assert await owed(db) == not_marked
    else:  # a position on SQLite is a row id: from the first row not marked on
        assert await owed(db) == ids[ids.index(not_marked[0]) :]

    async def indexes(conn: Any) -> set[str]:
        found = await conn.run_sync(lambda sync: inspect(sync).get_indexes("outbox"))
        return {ix["name"] for ix in found}

    async with db.writer.connect() as conn:
        assert "outbox_unpublished" not in await indexes(conn)
        assert "outbox_xid" in await indexes(conn)
    new = (await db.write(_add))[0]
    assert (await owed(db))[-1] == new
    if db_url.startswith("postgresql"):  # the column's default came with the upgrade
        assert all(row["xid"] is not None for row in await db.read(_outbox_rows))
