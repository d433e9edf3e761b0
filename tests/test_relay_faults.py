"""Issue 14: the relay's lease lives apart from its database work. Two relays (in process,
each with its own database pool and Redis bus) share a real Redis; the web app posts real
messages and a real /cable socket counts what arrives.

- A database stall longer than the lease TTL (a lock held on the outbox) does not cost the
  holder its lease while Redis answers: the standby never takes over, nothing is published
  twice, and the holder publishes again when the stall ends.
- The holder cut off from Redis (its lease's connections black-holed, tests/blackhole.py)
  stops publishing before its lease could be taken over: the two never both act as holder,
  and the standby takes over and publishes everything.
- The holder's database black-holed for good (every connection, new ones too): it gives
  the lease up after RELAY_STALL_TIMEOUT and the standby publishes everything.
- The relay's PostgreSQL LISTEN connection black-holed (a proxy in front of PostgreSQL):
  the relay finds it dead, listens again and publishes every message, once, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.engine import make_url

from server.bus.redis import RedisBus
from server.settings import Settings
from server.store.db import Database
from tests.blackhole import BlackholeProxy
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor, make_settings
from tests.procs import RedisServer
from workers.lease import RedisLease
from workers.listener import APPLICATION_NAME, asyncpg_dsn
from workers.relay import Relay

TTL = 1.0
POLL = 0.2


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def settings(db_url: str, tmp_path: Path, redis_server: RedisServer) -> Settings:
    # The web app publishes nothing durable itself: the relays below do.
    return make_settings(db_url, tmp_path, redis_url=redis_server.url, run_relay=False)


class Relays:
    def __init__(self, db_url: str, redis_url: str) -> None:
        self.db_url = db_url
        self.redis_url = redis_url
        self.closers: list[Any] = []

    async def start(
        self,
        lease_redis_url: str | None = None,
        db_url: str | None = None,
        stall_timeout: float = 30.0,
        ttl: float = TTL,
    ) -> Relay:
        db = Database(db_url or self.db_url)
        await db.start()
        bus = RedisBus(self.redis_url)
        await bus.start()
        lease_redis = bus.redis
        if lease_redis_url is not None:
            lease_redis = Redis.from_url(
                lease_redis_url, socket_timeout=5.0, retry=Retry(NoBackoff(), 0)
            )
            self.closers.append(lease_redis.aclose)
        relay = Relay(
            db,
            bus,
            RedisLease(lease_redis, ttl=ttl),
            poll_interval=POLL,
            lease_ttl=ttl,
            stall_timeout=stall_timeout,
        )
        relay.start()
        self.closers[:0] = [relay.stop, bus.close, db.close]
        return relay

    async def close(self) -> None:
        for close in self.closers:
            await close()


@pytest.fixture
async def relays(settings: Settings) -> AsyncIterator[Relays]:
    relays = Relays(settings.database_url, settings.redis_url or "")
    yield relays
    await relays.close()


async def until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.01)


async def received_once_in_order(cable: CableClient, sent: list[str], timeout: float) -> None:
    await cable.wait_event("message.created", lambda d: d["content"] == sent[-1], timeout=timeout)
    await asyncio.sleep(0.3)  # a duplicate would arrive right behind
    got = [e["data"]["content"] for e in cable.events("message.created")]
    missing = sorted(set(sent) - set(got))
    assert not missing, f"lost {len(missing)} of {len(sent)}: {missing[:10]}"
    assert got == sent, "out of order or duplicated"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_database_stall_keeps_the_lease(
    client: TestClient, visitor: Visitor, relays: Relays, db_url: str, redis_server: RedisServer
) -> None:
    """PostgreSQL only: a SQLite database in WAL mode cannot be stalled for the relay's reads
    from outside (a writer's lock makes its writes fail after the busy timeout instead)."""
    holder = await relays.start()
    await until(lambda: holder.lease.held, 5, "the first relay takes the lease")
    standby = await relays.start()
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    sent = [(await visitor.send(f"before {i}"))["content"] for i in range(3)]
    await received_once_in_order(cable, sent, timeout=5)

    redis = Redis.from_url(redis_server.url)
    admin = await asyncpg.connect(asyncpg_dsn(db_url))
    holders: set[bytes] = set()
    waited = False
    try:
        tx = admin.transaction()
        await tx.start()
        await admin.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        stall_end = time.monotonic() + 3 * TTL
        while time.monotonic() < stall_end:
            holders.add(await redis.get("relay:lease"))
            waiting = await lock_waiters(db_url)
            waited = waited or waiting > 0
            await asyncio.sleep(0.02)
        await tx.rollback()
    finally:
        await admin.close()
        await redis.aclose()
    assert waited, "the relay's database work was never stalled by the lock"
    assert holders == {holder.lease.holder.encode()}, "the lease changed hands during the stall"

    sent += [(await visitor.send(f"after {i}"))["content"] for i in range(3)]
    await received_once_in_order(cable, sent, timeout=5)
    assert standby.published == 0
    await cable.close()


async def lock_waiters(db_url: str) -> int:
    """Backends of this database waiting for a lock (the relay's, behind the test's)."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE NOT l.granted AND d.datname = current_database()"
        )
    finally:
        await conn.close()


async def test_relay_cut_off_from_redis_stops_before_takeover(
    client: TestClient, visitor: Visitor, relays: Relays, redis_server: RedisServer
) -> None:
    proxy = BlackholeProxy(redis_server.port).start()
    try:
        holder = await relays.start(lease_redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        await until(lambda: holder.lease.held, 5, "the first relay takes the lease")
        standby = await relays.start()
        cable = await CableClient.connect(client)
        await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
        sent = [(await visitor.send(f"m{i:03d}"))["content"] for i in range(3)]
        await received_once_in_order(cable, sent, timeout=5)

        overlap: list[float] = []
        holder_published_at_takeover: list[int] = []

        async def watch() -> None:
            while True:
                if standby.lease.held:
                    if holder.lease.held:
                        overlap.append(time.monotonic())
                    if not holder_published_at_takeover:
                        holder_published_at_takeover.append(holder.published)
                await asyncio.sleep(0.002)

        watcher = asyncio.ensure_future(watch())
        try:
            proxy.blackhole(new_too=True)  # the holder can reach Redis for its lease no more
            i = 3
            deadline = time.monotonic() + 10 * TTL
            while not holder_published_at_takeover and time.monotonic() < deadline:
                sent.append((await visitor.send(f"m{i:03d}"))["content"])
                i += 1
                await asyncio.sleep(0.05)
            assert holder_published_at_takeover, "the standby never took the lease over"
            for _ in range(5):
                sent.append((await visitor.send(f"m{i:03d}"))["content"])
                i += 1
            await received_once_in_order(cable, sent, timeout=10)
        finally:
            watcher.cancel()
        assert not overlap, "both relays acted as the lease holder at once"
        assert holder.published == holder_published_at_takeover[0], (
            "the cut-off relay published after the standby took over"
        )
        assert not holder.lease.held
        await cable.close()
    finally:
        proxy.stop()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_blackholed_listen_connection(
    client: TestClient, visitor: Visitor, relays: Relays, db_url: str
) -> None:
    """PostgreSQL only: LISTEN is how the relay learns of commits there (SQLite has none)."""
    url = make_url(db_url)
    proxy = BlackholeProxy(url.port or 5432).start()
    try:
        proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
        relay = await relays.start(db_url=proxied)
        await until(lambda: relay.lease.held, 5, "the relay takes the lease")
        cable = await CableClient.connect(client)
        await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
        listening = lambda link: link.sent(APPLICATION_NAME.encode())  # noqa: E731
        await until(lambda: proxy.opened_since(0, listening), 5, "the relay listens")
        sent = [(await visitor.send(f"m{i:03d}"))["content"] for i in range(3)]
        await received_once_in_order(cable, sent, timeout=5)

        holed_at = time.monotonic()
        assert proxy.blackhole(listening) == 1
        for i in range(3, 13):
            sent.append((await visitor.send(f"m{i:03d}"))["content"])
            await asyncio.sleep(0.05)
        # Found dead within a poll interval and the check's deadline (TTL / 3), plus margin.
        await until(
            lambda: proxy.opened_since(holed_at, listening), POLL + TTL + 3, "listening again"
        )
        for i in range(13, 18):
            sent.append((await visitor.send(f"m{i:03d}"))["content"])
        await received_once_in_order(cable, sent, timeout=10)
        await cable.close()
    finally:
        proxy.stop()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_relay_stuck_on_a_dead_database_gives_the_lease_up(
    client: TestClient, visitor: Visitor, relays: Relays, db_url: str
) -> None:
    """PostgreSQL only: a SQLite file has no connection to lose. Keeping the lease through
    a stall must not mean keeping it for good: the stuck relay would publish nothing."""
    url = make_url(db_url)
    proxy = BlackholeProxy(url.port or 5432).start()
    try:
        proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
        stuck = await relays.start(db_url=proxied, stall_timeout=2.0)
        await until(lambda: stuck.lease.held, 5, "the first relay takes the lease")
        standby = await relays.start()
        cable = await CableClient.connect(client)
        await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
        sent = [(await visitor.send(f"m{i:03d}"))["content"] for i in range(3)]
        await received_once_in_order(cable, sent, timeout=5)

        proxy.blackhole(new_too=True)
        for i in range(3, 13):
            sent.append((await visitor.send(f"m{i:03d}"))["content"])
            await asyncio.sleep(0.05)
        await until(lambda: standby.lease.held, 2.0 + 3 * TTL + 3, "the standby takes over")
        await received_once_in_order(cable, sent, timeout=10)
        assert stuck.stalls >= 1 and not stuck.lease.held
        await cable.close()
    finally:
        proxy.stop()
