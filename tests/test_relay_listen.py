"""The relay on PostgreSQL learns of events by LISTEN (workers/listener.py): real HTTP writes,
a real /cable socket, the in-process relay of the embedded configuration on a throwaway
PostgreSQL database. What must hold: an event too big for a notification still arrives, and
when the listening connection is killed, the relay listens again and publishes what was
committed meanwhile, once each, in order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from server import events
from server.services import SERVICES
from server.store import outbox
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor
from workers import relay as relay_module
from workers.listener import APPLICATION_NAME, asyncpg_dsn

on_postgresql = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

# Well under the relay's sweep age: delivery must come from listening, not from the sweep.
DELIVERY_TIMEOUT = 3.0


async def listening_backends(admin: asyncpg.Connection) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = $1",
        APPLICATION_NAME,
    )
    return [row["pid"] for row in rows]


async def wait_listening(admin: asyncpg.Connection, not_pid: int | None = None) -> int:
    for _ in range(300):
        pids = [pid for pid in await listening_backends(admin) if pid != not_pid]
        if pids:
            return pids[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no connection is listening for outbox notifications")


async def contents(cable: CableClient, count: int) -> list[str]:
    await cable.wait_for(lambda _: len(cable.events("message.created")) >= count, DELIVERY_TIMEOUT)
    await asyncio.sleep(0.2)  # a duplicate would arrive right behind
    return [e["data"]["content"] for e in cable.events("message.created")]


@on_postgresql
async def test_listener_killed_mid_stream(
    client: TestClient, visitor: Visitor, db_url: str
) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(db_url))
    cable = await CableClient.connect(client)
    try:
        await cable.subscribe(visitor_identifier(visitor.pubsub_token))  # type: ignore[arg-type]
        first = await wait_listening(admin)
        sent = []
        for i in range(5):
            sent.append((await visitor.send(f"before {i}"))["content"])
        assert await contents(cable, 5) == sent

        killed = await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        assert killed
        # Committed while nobody (or a fresh connection) listens: read from the table.
        for i in range(5):
            sent.append((await visitor.send(f"during {i}"))["content"])
        second = await wait_listening(admin, not_pid=first)
        for i in range(5):
            sent.append((await visitor.send(f"after {i}"))["content"])

        assert await contents(cable, 15) == sent
        assert second != first
        db = client.app[SERVICES].db
        for _ in range(300):  # every event is marked published, in the background
            if not await db.read(outbox.unpublished, 1):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("events left unmarked")
    finally:
        await cable.close()
        await admin.close()


@on_postgresql
async def test_event_too_big_for_a_notification(client: TestClient, visitor: Visitor) -> None:
    cable = await CableClient.connect(client)
    try:
        await cable.subscribe(visitor_identifier(visitor.pubsub_token))  # type: ignore[arg-type]
        big = "x" * (outbox.NOTIFY_MAX_BYTES * 3)
        await visitor.send("small before")
        await visitor.send(big)
        await visitor.send("small after")
        assert await contents(cable, 3) == ["small before", big, "small after"]
    finally:
        await cable.close()


def test_notice_fits_or_is_left_out() -> None:
    small = outbox.notice(7, ["inbox:1", "contact:abc"], b'{"event":"x"}')
    assert outbox.parse_notification(f"42 {small}") == (
        42,
        {
            "id": 42,
            "conversation_id": 7,
            "channels": ["inbox:1", "contact:abc"],
            "payload": '{"event":"x"}',
        },
    )
    big = outbox.notice(7, ["inbox:1"], b"x" * outbox.NOTIFY_MAX_BYTES)
    assert big == ""
    assert outbox.parse_notification(f"42 {big}") == (42, None)


async def _write_unnotified(conn: Any, pubsub_token: str, content: str) -> None:
    """An outbox row as an older version (or a lost notification) would leave it: no NOTIFY."""
    data = {"content": content, "account_id": 1}
    await outbox._INSERT.run(
        conn,
        {
            "o_conversation_id": None,
            "o_channels": [events.contact_channel(pubsub_token)],
            "o_event": events.MESSAGE_CREATED,
            "o_payload": outbox.encode_message(events.MESSAGE_CREATED, data).decode(),
            "o_created_at": time.time(),
        },
    )


@on_postgresql
async def test_row_without_notification_is_swept(
    client: TestClient, visitor: Visitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "SWEEP_AGE", 0.3)
    cable = await CableClient.connect(client)
    try:
        await cable.subscribe(visitor_identifier(visitor.pubsub_token))  # type: ignore[arg-type]
        db = client.app[SERVICES].db
        await db.write(_write_unnotified, visitor.pubsub_token, "never notified")
        # The sweep runs once a poll interval (1 s) for rows older than SWEEP_AGE.
        await cable.wait_for(lambda _: cable.events("message.created"), 2.5)
        assert [e["data"]["content"] for e in cable.events("message.created")] == ["never notified"]
    finally:
        await cable.close()
