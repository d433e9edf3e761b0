"""Issue 14 item 4: AnyCable's extended protocol (actioncable-v1-ext-json) beside the plain
one, over real sockets on the embedded default (both databases) and through Redis.

The welcome carries a session id; a client that reconnects with it gets its subscriptions
back (re-resolved: a revoked token stays out) and asks for what it missed by position; durable
broadcasts carry `stream_id`, `epoch`, `offset`; `history` (or subscribe with `history`) is
answered with the missed events, in order and once, then `confirm_history`, or
`reject_history` where the history cannot cover it; `pong` is accepted. A plain client's
frames stay byte for byte what they were."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.app import create_app
from server.hub import protocol
from server.hub.sessions import KEY_PREFIX, MemorySessions, valid_sid
from server.ratelimit import Rate, RateLimits
from server.services import SERVICES
from server.store import accounts as accounts_store
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World, build_world, make_settings, temp_pg_database
from tests.procs import RedisServer
from tests.test_realtime_events import agent_post, relayed

SETTLE = 0.2  # after a later frame has arrived, how long an earlier one may still be in flight


@pytest.fixture
async def ext_client(aiohttp_client: Any, db_url: str, tmp_path: Path) -> TestClient:
    settings = make_settings(
        db_url,
        tmp_path,
        history_limit=20,
        rate_limits=RateLimits(
            presence_per_socket=Rate(1000, 60), history_per_socket=Rate(1000, 60)
        ),
    )
    return await aiohttp_client(create_app(settings))


async def _quiet(client: TestClient) -> None:
    await relayed(client)
    hub = client.app[SERVICES].hub
    deadline = time.monotonic() + 5
    while hub.connections:
        assert time.monotonic() < deadline, f"sockets left over: {hub.connections}"
        await asyncio.sleep(0.02)


async def _run(client: TestClient, *checks: Any) -> None:
    """Several checks on one server and database (a PostgreSQL database per test is the
    expensive part), each with a world and a visitor of its own."""
    for check in checks:
        await _quiet(client)
        world = await build_world(client.app[SERVICES].db)
        visitor = await Visitor(client, world.inbox["website_token"]).start()
        given = {"client": client, "world": world, "visitor": visitor}
        wanted = inspect.signature(check).parameters
        await check(**{k: v for k, v in given.items() if k in wanted})


def contents(cable: CableClient) -> list[str]:
    return [e["data"]["content"] for e in cable.events("message.created")]


def message_frames(cable: CableClient) -> list[dict[str, Any]]:
    return [
        f
        for f in cable.frames
        if isinstance(f.get("message"), dict) and f["message"].get("event") == "message.created"
    ]


async def ext_visitor(client: Any, visitor: Visitor, **kw: Any) -> CableClient:
    cable = await CableClient.connect(client, ext=True)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""), **kw)
    return cable


async def wait_content(cable: CableClient, content: str, timeout: float = 5.0) -> None:
    await cable.wait_event("message.created", lambda d: d["content"] == content, timeout)


async def reconnect(client: Any, old: CableClient, *, header: bool = False) -> CableClient:
    """Drop the socket and come back with its session id, as @anycable/core does."""
    sid = old.welcome["sid"]
    await old.close()
    if header:
        return await CableClient.connect(
            client, "/cable", ext=True, headers={"X-ANYCABLE-RESTORE-SID": sid}
        )
    return await CableClient.connect(client, f"/cable?sid={sid}", ext=True)


# -- welcome, positions, plain frames unchanged ---------------------------------------------


async def check_welcome_has_a_session_id(client: TestClient) -> None:
    cable = await CableClient.connect(client, ext=True)
    sid = cable.welcome["sid"]
    assert cable.frames[0] == {"type": "welcome", "sid": sid}
    assert valid_sid(sid) == sid and len(sid) >= 24
    other = await CableClient.connect(client, ext=True)
    assert other.welcome["sid"] != sid
    plain = await CableClient.connect(client)
    assert plain.raw[0] == '{"type":"welcome"}'
    for c in (cable, other, plain):
        await c.close()


async def check_broadcasts_carry_positions_and_plain_frames_do_not_change(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    ident = visitor_identifier(visitor.pubsub_token or "")
    ext = await ext_visitor(client, visitor)
    plain = await CableClient.connect(client)
    await plain.subscribe(ident)
    for n in (1, 2, 3):
        await visitor.send(f"m{n}")
    for cable in (ext, plain):
        await wait_content(cable, "m3")
    frames = message_frames(ext)
    channel = f"contact:{visitor.pubsub_token}"
    assert [f["stream_id"] for f in frames] == [channel] * 3
    offsets = [f["offset"] for f in frames]
    assert offsets == list(range(offsets[0], offsets[0] + 3))
    assert len({f["epoch"] for f in frames}) == 1
    # The plain frame is the extended one without its position: same identifier, same
    # message bytes, closed by a bare brace.
    plain_raw = [r for r in plain.raw if '"message.created"' in r]
    ext_raw = [r for r in ext.raw if '"message.created"' in r]
    for p, e, f in zip(plain_raw, ext_raw, frames, strict=True):
        tail = f',"stream_id":"{channel}","epoch":"{f["epoch"]}","offset":{f["offset"]}}}'
        assert e.endswith(tail) and p == e[: -len(tail)] + "}"
        assert p.startswith('{"identifier":' + json.dumps(ident) + ',"message":{')
        assert set(json.loads(p)) == {"identifier", "message"}
    # Typing and presence are ephemeral: no position.
    conv = (await visitor.send("m4"))["conversation_id"]
    await agent_post(
        client, world, world.agent, conv, "toggle_typing_status", {"typing_status": "on"}
    )
    await ext.wait_event("conversation.typing_on")
    ephemeral = [
        f
        for f in ext.frames
        if isinstance(f.get("message"), dict)
        and f["message"]["event"] in ("conversation.typing_on", "presence.update")
    ]
    assert len(ephemeral) >= 2 and all("stream_id" not in f for f in ephemeral)
    for c in (ext, plain):
        await c.close()


async def check_pong_is_accepted(client: TestClient, visitor: Visitor) -> None:
    cable = await ext_visitor(client, visitor)
    for _ in range(protocol_errors_allowed() + 5):
        await cable.send({"command": "pong"})
    await visitor.send("after the pongs")
    await wait_content(cable, "after the pongs")
    assert not cable.closed.is_set()
    await cable.close()
    # The plain protocol has no pong: it is a frame it cannot act on, as it always was.
    plain = await CableClient.connect(client)
    for _ in range(protocol_errors_allowed()):
        await plain.send({"command": "pong"})
    frame = await plain.wait_for(lambda f: f.get("type") == "disconnect")
    assert frame["reason"] == "invalid_request"


def protocol_errors_allowed() -> int:
    from server.hub.endpoint import MAX_PROTOCOL_ERRORS

    return MAX_PROTOCOL_ERRORS


async def test_welcome_positions_plain_frames_pong(ext_client: TestClient) -> None:
    await _run(
        ext_client,
        check_welcome_has_a_session_id,
        check_broadcasts_carry_positions_and_plain_frames_do_not_change,
        check_pong_is_accepted,
    )


# -- sessions and history ---------------------------------------------------------------------


async def check_restore_then_history_sends_exactly_the_missed(
    client: TestClient, visitor: Visitor
) -> None:
    ident = visitor_identifier(visitor.pubsub_token or "")
    cable = await ext_visitor(client, visitor)
    await visitor.send("m1")
    await wait_content(cable, "m1")
    positions = cable.positions()
    back = await reconnect(client, cable)
    assert back.welcome["restored"] is True and back.welcome["restored_ids"] == [ident]
    assert back.welcome["sid"] != cable.welcome["sid"]
    # Missed while away: posted before the client asks for its history. Held live, sent once.
    await visitor.send("m2")
    await visitor.send("m3")
    await relayed(client)
    await back.send(
        {"command": "history", "identifier": ident, "history": {"since": 0, "streams": positions}}
    )
    done = await back.wait_for(lambda f: f.get("type") in ("confirm_history", "reject_history"))
    assert done == {"identifier": ident, "type": "confirm_history"}
    assert contents(back) == ["m2", "m3"]  # before the confirmation, in order
    await visitor.send("m4")
    await wait_content(back, "m4")
    await asyncio.sleep(SETTLE)
    assert contents(back) == ["m2", "m3", "m4"]
    offsets = [f["offset"] for f in message_frames(back)]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    hub = client.app[SERVICES].hub
    assert hub.sessions_restored >= 1 and hub.history_confirmed >= 1
    # The session was taken: the same id does not restore a second time.
    again = await CableClient.connect(client, f"/cable?sid={cable.welcome['sid']}", ext=True)
    assert "restored" not in again.welcome
    await again.close()
    await back.close()


async def check_a_taken_session_does_not_come_back(client: TestClient, visitor: Visitor) -> None:
    """The client comes back before the server noticed its old socket go (a dropped network):
    the session is restored on the new socket, and the old one's close does not put it back
    for someone holding the old id (it was in a URL) to restore again."""
    old = await ext_visitor(client, visitor)
    sid = old.welcome["sid"]
    back = await CableClient.connect(client, f"/cable?sid={sid}", ext=True)
    assert back.welcome["restored"] is True
    await old.close()
    await _gone(client, 1)
    again = await CableClient.connect(client, f"/cable?sid={sid}", ext=True)
    assert "restored" not in again.welcome
    await again.close()
    await back.close()


async def _gone(client: TestClient, left: int) -> None:
    """Until only `left` sockets remain open on the server (closes are handled after)."""
    hub = client.app[SERVICES].hub
    deadline = time.monotonic() + 5
    while len(hub.connections) > left:
        assert time.monotonic() < deadline, hub.connections
        await asyncio.sleep(0.02)


async def check_restore_by_header_and_release_without_history(
    client: TestClient, visitor: Visitor
) -> None:
    cable = await ext_visitor(client, visitor)
    await visitor.send("m1")
    await wait_content(cable, "m1")
    back = await reconnect(client, cable, header=True)
    assert back.welcome["restored"] is True
    # A client that never asks for history gets its live events once the hold ends
    # (CABLE_SUBSCRIBE_TIMEOUT); asking with nothing in it ends the hold at once.
    await visitor.send("m2")
    await relayed(client)
    ident = back.welcome["restored_ids"][0]
    await back.send({"command": "history", "identifier": ident})
    await back.wait_for(lambda f: f.get("type") == "confirm_history")
    await wait_content(back, "m2")
    assert contents(back) == ["m2"]
    await back.close()


async def check_history_that_cannot_be_covered_is_rejected(
    client: TestClient, visitor: Visitor
) -> None:
    ident = visitor_identifier(visitor.pubsub_token or "")
    cable = await ext_visitor(client, visitor)
    await visitor.send("m1")
    await wait_content(cable, "m1")
    channel = f"contact:{visitor.pubsub_token}"
    position = cable.positions()[channel]
    # Another epoch (Redis lost its data since): nothing can be said about what was missed.
    await cable.send(
        {
            "command": "history",
            "identifier": ident,
            "history": {"streams": {channel: {"epoch": "another", "offset": 1}}},
        }
    )
    frame = await cable.wait_for(lambda f: f.get("type") in ("confirm_history", "reject_history"))
    assert frame == {"identifier": ident, "type": "reject_history"}
    # Trimmed: the history keeps 20 events here.
    back = await reconnect(client, cable)
    for n in range(2, 30):
        await visitor.send(f"m{n}")
    await relayed(client)
    await back.send(
        {"command": "history", "identifier": ident, "history": {"streams": {channel: position}}}
    )
    frame = await back.wait_for(lambda f: f.get("type") in ("confirm_history", "reject_history"))
    assert frame["type"] == "reject_history"
    # Rejected, it still goes live with what was held, in order, none twice.
    await visitor.send("m30")
    await wait_content(back, "m30")
    got = contents(back)
    assert got == sorted(got, key=lambda c: int(c[1:])) and len(got) == len(set(got))
    assert client.app[SERVICES].hub.history_rejected >= 2
    await back.close()


async def check_subscribe_with_history_by_position_and_since(
    client: TestClient, visitor: Visitor
) -> None:
    """What @anycable/core sends when it reconnects without a session (after a
    `disconnect` frame, or past SESSION_TTL): subscribe with its positions, and `since` for
    streams it has none of."""
    ident = visitor_identifier(visitor.pubsub_token or "")
    first = await ext_visitor(client, visitor)
    await visitor.send("m1")
    await wait_content(first, "m1")
    positions = first.positions()
    await first.close()
    await visitor.send("m2")
    await visitor.send("m3")
    await relayed(client)
    cable = await CableClient.connect(client, ext=True)
    await cable.subscribe(ident, history={"since": int(time.time()) - 60, "streams": positions})
    frame = await cable.wait_for(lambda f: f.get("type") in ("confirm_history", "reject_history"))
    assert frame["type"] == "confirm_history"
    assert contents(cable) == ["m2", "m3"]
    await cable.close()
    # By time alone (no position yet): everything since then, here all three.
    since = await CableClient.connect(client, ext=True)
    await since.subscribe(ident, history={"since": int(time.time()) - 60})
    await since.wait_for(lambda f: f.get("type") == "confirm_history")
    assert contents(since) == ["m1", "m2", "m3"]
    # Since now: nothing yet, confirmed; live events follow.
    await since.close()
    now = await CableClient.connect(client, ext=True)
    await now.subscribe(ident, history={"since": int(time.time()) + 1})
    await now.wait_for(lambda f: f.get("type") == "confirm_history")
    await visitor.send("m4")
    await wait_content(now, "m4")
    assert contents(now) == ["m4"]
    await now.close()


async def check_a_revoked_token_is_not_restored(client: TestClient, world: World) -> None:
    agent = world.agent
    ident = agent_identifier(agent["pubsub_token"], world.account["id"], agent["id"])
    cable = await CableClient.connect(client, ext=True)
    await cable.subscribe(ident)
    db = client.app[SERVICES].db
    await db.write(accounts_store.rotate_user_tokens, agent["id"])
    back = await reconnect(client, cable)
    assert "restored" not in back.welcome
    assert not back.frames[1:] or all(f.get("type") == "ping" for f in back.frames[1:])
    await back.subscribe(ident, expect="reject_subscription")
    await back.close()


async def check_history_requests_are_bounded(client: TestClient, visitor: Visitor) -> None:
    ident = visitor_identifier(visitor.pubsub_token or "")
    cable = await ext_visitor(client, visitor)
    streams = {
        f"s{i}": {"epoch": "e", "offset": 1} for i in range(protocol.MAX_HISTORY_STREAMS + 1)
    }
    bad = [
        {"streams": streams},
        {"streams": {"x": {"epoch": "e", "offset": -1}}},
        {"streams": {"x": {"epoch": "e" * 65, "offset": 1}}},
        {"streams": {"x": {"epoch": "e", "offset": True}}},
        {"since": "yesterday"},
        [1, 2],
    ]
    for history in bad:
        await cable.send({"command": "history", "identifier": ident, "history": history})
    await cable.send({"command": "history", "identifier": "not-mine", "history": {"since": 1}})
    await visitor.send("still here")
    await wait_content(cable, "still here")
    assert not any(f.get("type") in ("confirm_history", "reject_history") for f in cable.frames)
    assert not cable.closed.is_set()
    await cable.close()


async def test_sessions_and_history(ext_client: TestClient) -> None:
    await _run(
        ext_client,
        check_restore_then_history_sends_exactly_the_missed,
        check_a_taken_session_does_not_come_back,
        check_restore_by_header_and_release_without_history,
        check_history_that_cannot_be_covered_is_rejected,
        check_subscribe_with_history_by_position_and_since,
        check_a_revoked_token_is_not_restored,
        check_history_requests_are_bounded,
    )


async def test_history_requests_are_rate_limited(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        tmp_path,
        rate_limits=RateLimits(history_per_socket=Rate(3, 60)),
    )
    client = await aiohttp_client(create_app(settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    ident = visitor_identifier(visitor.pubsub_token or "")
    cable = await ext_visitor(client, visitor)
    for _ in range(4):
        await cable.send({"command": "history", "identifier": ident, "history": {"since": 1}})
    frame = await cable.wait_for(lambda f: f.get("type") == "disconnect")
    assert frame == {
        "type": "disconnect",
        "reason": "rate_limited",
        "reconnect": False,
        "limit": "history_per_socket",
    }
    assert len([f for f in cable.frames if f.get("type") == "confirm_history"]) == 3


async def test_too_much_held_while_resuming_resyncs_the_socket(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """Live events held for a restored subscription are bounded by what its socket may queue:
    past SEND_QUEUE_SIZE it is told to reconnect (and resumes from its position) rather than
    grow or skip."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 't.db'}", tmp_path, send_queue_size=4
    )
    client = await aiohttp_client(create_app(settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    cable = await ext_visitor(client, visitor)
    await visitor.send("m1")
    await wait_content(cable, "m1")
    back = await reconnect(client, cable)
    assert back.welcome["restored"] is True
    for n in range(2, 8):
        await visitor.send(f"m{n}")
    frame = await back.wait_for(lambda f: f.get("type") == "disconnect")
    assert frame == {"type": "disconnect", "reason": "resync", "reconnect": True}
    assert contents(back) == []


async def test_sessions_off_means_no_session_id(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", tmp_path, session_ttl=0.0)
    client = await aiohttp_client(create_app(settings))
    cable = await CableClient.connect(client, ext=True)
    assert cable.frames[0] == {"type": "welcome"}
    await cable.close()


async def test_memory_sessions_expire_and_are_bounded() -> None:
    sessions = MemorySessions(ttl=60, limit=3)
    for n in range(5):
        await sessions.save(f"sid{n}", [f"ident{n}"])
    assert len(sessions) == 3
    assert await sessions.take("sid0") is None  # the oldest left first
    assert await sessions.take("sid4") == ["ident4"]
    assert await sessions.take("sid4") is None  # taken once
    await sessions.save("sid3", [])  # no subscriptions: nothing kept
    assert await sessions.take("sid3") is None
    await sessions.save("sid9", ["x"], refresh=True)  # a refresh does not make one
    assert await sessions.take("sid9") is None
    await sessions.save("sid2", ["y"], refresh=True)
    assert await sessions.take("sid2") == ["y"]
    short = MemorySessions(ttl=60)
    await short.save("a", ["x"])
    expires, _ = short._entries["a"]
    assert 59 < expires - time.monotonic() <= 60
    short._entries["a"] = (time.monotonic() - 1, ["x"])  # as it stands a minute later
    assert await short.take("a") is None


# -- through Redis: the session and the history shared by two web processes --------------------


@pytest.fixture
async def two_apps(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Redis]]:
    """Two web apps on one PostgreSQL database and one Redis, the first running the relay."""
    redis_server = RedisServer(tmp_path / "redis").start()
    pg = temp_pg_database()
    url = await pg.__aenter__()
    try:
        clients = []
        for n, relay in ((1, True), (2, False)):
            settings = make_settings(
                url,
                tmp_path / f"app{n}",
                redis_url=redis_server.url,
                run_relay=relay,
                session_ttl=30.0,
            )
            clients.append(await aiohttp_client(create_app(settings)))
        redis = Redis.from_url(redis_server.url)
        yield clients[0], clients[1], redis
        await redis.aclose()
        for c in clients:
            await c.close()
    finally:
        await pg.__aexit__(None, None, None)
        redis_server.stop()


async def test_a_session_restores_on_the_other_process(two_apps: Any) -> None:
    web1, web2, redis = two_apps
    world = await build_world(web1.app[SERVICES].db)
    visitor = await Visitor(web1, world.inbox["website_token"]).start()
    ident = visitor_identifier(visitor.pubsub_token or "")
    cable = await ext_visitor(web1, visitor)
    await visitor.send("m1")
    await wait_content(cable, "m1")
    sid = cable.welcome["sid"]
    assert 0 < await redis.pttl(KEY_PREFIX + sid) <= 30_000
    positions = cable.positions()
    await cable.close()
    await visitor.send("m2")
    await visitor.send("m3")
    back = await CableClient.connect(web2, f"/cable?sid={sid}", ext=True)
    assert back.welcome["restored_ids"] == [ident]
    assert await redis.exists(KEY_PREFIX + sid) == 0
    await back.send({"command": "history", "identifier": ident, "history": {"streams": positions}})
    await back.wait_for(lambda f: f.get("type") == "confirm_history")
    await visitor.send("m4")
    await wait_content(back, "m4")
    await asyncio.sleep(SETTLE)
    assert contents(back) == ["m2", "m3", "m4"]
    assert web2.app[SERVICES].hub.sessions_restored == 1
    metrics = await (await web2.get("/metrics")).text()
    assert "chat_cable_sessions_restored_total 1.0" in metrics
    assert 'chat_cable_history_requests_total{result="confirmed"} 1.0' in metrics
    await back.close()
