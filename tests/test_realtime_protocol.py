"""/cable speaks ActionCable (issue 3 item 1) over real WebSocket frames: subprotocol, welcome,
pings, confirm/reject, unsubscribe, update_presence, the subscription limit, and malformed
frames that must never hurt the hub or another socket. Both databases."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.hub import protocol
from server.ratelimit import Rate, RateLimits
from server.services import SERVICES
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World, build_world, make_settings
from tests.test_realtime_events import relayed


def _hub(client: TestClient) -> Any:
    return client.app[SERVICES].hub


@pytest.fixture
async def fast_client(aiohttp_client: Any, db_url: str, tmp_path: Any) -> TestClient:
    """Pings every 0.2 s and at most 3 subscriptions a socket, so the tests stay quick; room
    for the 19 refused subscribes one check sends on one socket (tests/test_rate_limits_cable.py
    tests the default)."""
    settings = make_settings(
        db_url,
        tmp_path,
        ping_interval=0.2,
        max_subscriptions_per_socket=3,
        rate_limits=RateLimits(failed_subscribes_per_socket=Rate(100, 60)),
    )
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def fast_world(fast_client: TestClient) -> World:
    return await build_world(fast_client.app[SERVICES].db)


async def _quiet(client: TestClient) -> None:
    """Every earlier event relayed and every earlier socket gone: a clean slate for a check."""
    await relayed(client)
    hub = _hub(client)
    deadline = time.monotonic() + 5
    while hub.connections:
        assert time.monotonic() < deadline, f"sockets left over: {hub.connections}"
        await asyncio.sleep(0.02)


async def _run(client: TestClient, world: World, *checks: Any) -> None:
    """Several checks on one server and database (a PostgreSQL database per test is the
    expensive part), each with a visitor of its own and no sockets left from the previous."""
    for check in checks:
        await _quiet(client)
        visitor = await Visitor(client, world.inbox["website_token"]).start()
        given = {"fast_client": client, "fast_world": world, "fast_visitor": visitor}
        wanted = inspect.signature(check).parameters
        await check(**{k: v for k, v in given.items() if k in wanted})


async def test_handshake(fast_client: TestClient, fast_world: World) -> None:
    await _run(
        fast_client,
        fast_world,
        check_subprotocol_selected_and_welcome_first,
        check_no_actioncable_subprotocol_gets_invalid_request_and_close,
        check_pings_carry_an_integer_epoch,
    )


async def test_subscribe_confirm_and_reject(fast_client: TestClient, fast_world: World) -> None:
    await _run(
        fast_client,
        fast_world,
        check_confirm_echoes_the_identifier_verbatim,
        check_reject_unknown_and_mismatched_tokens,
        check_out_of_range_ids_and_odd_tokens_are_rejected_not_crashed,
        check_agent_identifier_with_string_ids_is_accepted,
        check_repeated_subscribe_is_confirmed_once_and_delivers_once,
    )


async def test_unsubscribe_and_subscription_limit(
    fast_client: TestClient, fast_world: World
) -> None:
    await _run(
        fast_client,
        fast_world,
        check_unsubscribe_stops_delivery,
        check_subscriptions_beyond_the_limit_are_rejected,
    )


async def test_presence(fast_client: TestClient, fast_world: World) -> None:
    await _run(
        fast_client,
        fast_world,
        check_update_presence_answers_presence_update,
        check_presence_goes_only_to_the_subscriber,
        check_unknown_action_and_unsubscribed_identifier_are_ignored,
    )


async def test_bad_frames_and_broken_sockets(fast_client: TestClient, fast_world: World) -> None:
    await _run(
        fast_client,
        fast_world,
        check_malformed_frames_never_hurt_the_hub_or_other_sockets,
        check_huge_and_invalid_utf8_frames_close_only_the_sender,
        check_abrupt_disconnects_leave_no_subscriptions_behind,
    )


async def _agent(client: TestClient, world: World, who: str = "agent") -> CableClient:
    user = getattr(world, who)
    cable = await CableClient.connect(client)
    await cable.subscribe(agent_identifier(user["pubsub_token"], world.account["id"], user["id"]))
    return cable


async def _visitor_cable(client: TestClient, visitor: Visitor) -> CableClient:
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token))  # type: ignore[arg-type]
    return cable


async def _receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.data


# -- handshake ------------------------------------------------------------------------------


async def check_subprotocol_selected_and_welcome_first(fast_client: TestClient) -> None:
    ws = await fast_client.ws_connect(
        "/cable", protocols=("actioncable-v1-json", "actioncable-unsupported")
    )
    assert ws.protocol == "actioncable-v1-json"
    first = json.loads(await _receive_json(ws))
    assert first == {"type": "welcome"}
    await ws.close()


async def check_no_actioncable_subprotocol_gets_invalid_request_and_close(
    fast_client: TestClient,
) -> None:
    for offered in [(), ("actioncable-unsupported",), ("graphql-ws", "json")]:
        ws = await fast_client.ws_connect("/cable", protocols=offered)
        assert ws.protocol is None
        frame = json.loads(await _receive_json(ws))
        assert frame == {"type": "disconnect", "reason": "invalid_request", "reconnect": False}
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
        await ws.close()
    assert _hub(fast_client).connections == set()


async def check_pings_carry_an_integer_epoch(fast_client: TestClient) -> None:
    cable = await CableClient.connect(fast_client)
    assert cable.frames[0] == {"type": "welcome"}
    deadline = time.monotonic() + 5
    while len([f for f in cable.frames if f.get("type") == "ping"]) < 3:
        assert time.monotonic() < deadline, cable.frames
        await asyncio.sleep(0.05)
    pings = [f for f in cable.frames if f.get("type") == "ping"]
    for ping in pings:
        assert set(ping) == {"type", "message"}
        assert type(ping["message"]) is int
        assert abs(ping["message"] - time.time()) < 5
    await cable.close()


def test_default_ping_interval_is_three_seconds(tmp_path: Any) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", tmp_path)
    assert settings.ping_interval == 3.0
    assert create_app(settings)[SERVICES].hub.ping_interval == 3.0  # type: ignore[union-attr]


async def test_each_socket_is_pinged_every_interval_and_the_sockets_in_turns(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    """Four sockets, a 0.4 s interval: every socket gets a ping about every 0.4 s (not one
    per tick), and the four get theirs at different moments, not in one burst."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 't.db'}", tmp_path, ping_interval=0.4
    )
    client = await aiohttp_client(create_app(settings))
    sockets = [
        await client.ws_connect("/cable", protocols=("actioncable-v1-json",)) for _ in range(4)
    ]
    arrivals: list[list[float]] = [[] for _ in sockets]

    async def listen(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if json.loads(msg.data).get("type") == "ping":
                arrivals[index].append(time.monotonic())

    listeners = [asyncio.create_task(listen(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(2.1)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    for ws in sockets:
        await ws.close()

    for times in arrivals:
        assert 4 <= len(times) <= 6, arrivals  # ~2.1 s / 0.4 s
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(0.2 < gap < 0.8 for gap in gaps), gaps
    # Round robin put the four sockets in four groups, 0.1 s apart: their first pings span
    # about 0.3 s (all at once, they would span the few ms the frames take).
    firsts = sorted(times[0] for times in arrivals)
    assert firsts[-1] - firsts[0] > 0.15, firsts


# -- subscribe ------------------------------------------------------------------------------


async def check_confirm_echoes_the_identifier_verbatim(
    fast_client: TestClient, fast_visitor: Visitor
) -> None:
    """Unusual key order, spacing, an extra key and non-ASCII text: the client matches on
    string equality, so every frame of the subscription must carry the exact string."""
    token = fast_visitor.pubsub_token
    ident = (
        f'{{ "pubsub_token" :  "{token}",\n\t"channel":"RoomChannel" ,'
        ' "note": "caf\\u00e9 \u00e9 \\"q\\" \\/" }'
    )
    ws = await fast_client.ws_connect("/cable", protocols=("actioncable-v1-json",))
    assert json.loads(await _receive_json(ws))["type"] == "welcome"
    await ws.send_str(json.dumps({"command": "subscribe", "identifier": ident}))
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while not any(f.get("message", {}).get("event") == "presence.update" for f in seen):
        # (pings are filtered out below, so every "message" here is an event)
        assert time.monotonic() < deadline, seen
        raw = await _receive_json(ws)
        frame = json.loads(raw)
        if frame.get("type") != "ping":
            seen.append(frame)
    assert seen[0] == {"identifier": ident, "type": "confirm_subscription"}
    for frame in seen:
        assert frame["identifier"] == ident
    await ws.close()


async def check_reject_unknown_and_mismatched_tokens(
    fast_client: TestClient, fast_world: World, fast_visitor: Visitor
) -> None:
    other = await build_world(fast_client.app[SERVICES].db)
    agent, admin = fast_world.agent, fast_world.admin
    acc = fast_world.account["id"]
    bad = [
        visitor_identifier("no-such-token"),
        visitor_identifier(agent["pubsub_token"]),  # an agent token without user_id
        agent_identifier(agent["pubsub_token"], acc, admin["id"]),  # wrong user_id
        agent_identifier(fast_visitor.pubsub_token, acc, agent["id"]),  # contact token as agent
        agent_identifier(agent["pubsub_token"], other.account["id"], agent["id"]),
        agent_identifier(other.admin["pubsub_token"], acc, other.admin["id"]),
        json.dumps({"channel": "NotificationChannel", "pubsub_token": fast_visitor.pubsub_token}),
        json.dumps({"pubsub_token": fast_visitor.pubsub_token}),
        json.dumps({"channel": "RoomChannel"}),
        json.dumps({"channel": "RoomChannel", "pubsub_token": 12345}),
        json.dumps(
            {
                "channel": "RoomChannel",
                "pubsub_token": agent["pubsub_token"],
                "user_id": agent["id"],
            }
        ),  # no account_id
        json.dumps(
            {
                "channel": "RoomChannel",
                "pubsub_token": agent["pubsub_token"],
                "user_id": True,
                "account_id": acc,
            }
        ),
        '{"channel":"RoomChannel","pubsub_token":',
        "not json at all",
        "[1,2,3]",
        '"RoomChannel"',
    ]
    cable = await CableClient.connect(fast_client)
    for ident in bad:
        await cable.subscribe(ident, expect="reject_subscription")
    assert cable.events() == []
    # The socket is still usable: a good subscription after all those rejections.
    await cable.subscribe(visitor_identifier(fast_visitor.pubsub_token))
    await cable.close()


async def check_out_of_range_ids_and_odd_tokens_are_rejected_not_crashed(
    fast_client: TestClient, fast_world: World, fast_visitor: Visitor
) -> None:
    """Ids no database column can hold and tokens with a NUL byte must be a rejection, not
    an exception that drops the socket."""
    agent = fast_world.agent
    acc = fast_world.account["id"]
    huge = 2**70
    cable = await CableClient.connect(fast_client)

    def with_ids(user_id: Any, account_id: Any) -> str:
        return json.dumps(
            {
                "channel": "RoomChannel",
                "pubsub_token": agent["pubsub_token"],
                "account_id": account_id,
                "user_id": user_id,
            }
        )

    for ident in [
        agent_identifier(agent["pubsub_token"], acc, huge),
        agent_identifier(agent["pubsub_token"], huge, agent["id"]),
        agent_identifier(agent["pubsub_token"], acc, -(2**70)),
        with_ids(2**63, acc),
        with_ids(agent["id"], 2**63),
        with_ids(2**64 - 1, acc),
        with_ids(-1, acc),
        with_ids(0, acc),
        with_ids(str(huge), acc),
        with_ids(str(2**63), acc),
        with_ids("\u00b2", acc),
        with_ids(agent["id"], "\u0661"),
        with_ids(1.5, acc),
        with_ids([agent["id"]], acc),
        with_ids({"id": agent["id"]}, acc),
        '{"channel":"RoomChannel","pubsub_token":"\\ud800","account_id":1,"user_id":1}',
        json.dumps(
            {
                "channel": "RoomChannel",
                "pubsub_token": agent["pubsub_token"],
                "user_id": str(huge),
                "account_id": acc,
            }
        ),
        visitor_identifier("abc\x00def"),
        agent_identifier("abc\x00def", acc, agent["id"]),
    ]:
        await cable.subscribe(ident, expect="reject_subscription")
    assert not cable.closed.is_set()
    await cable.subscribe(visitor_identifier(fast_visitor.pubsub_token))
    await cable.close()


async def check_agent_identifier_with_string_ids_is_accepted(
    fast_client: TestClient, fast_world: World
) -> None:
    agent = fast_world.agent
    ident = json.dumps(
        {
            "channel": "RoomChannel",
            "pubsub_token": agent["pubsub_token"],
            "account_id": str(fast_world.account["id"]),
            "user_id": str(agent["id"]),
        }
    )
    cable = await CableClient.connect(fast_client)
    await cable.subscribe(ident)
    await cable.close()


async def check_unsubscribe_stops_delivery(
    fast_client: TestClient, fast_world: World, fast_visitor: Visitor
) -> None:
    ident = visitor_identifier(fast_visitor.pubsub_token)  # type: ignore[arg-type]
    vcable = await CableClient.connect(fast_client)
    await vcable.subscribe(ident)
    acable = await _agent(fast_client, fast_world)
    first = await fast_visitor.send("before unsubscribe")
    await vcable.wait_event("message.created", lambda d: d["id"] == first["id"])

    await vcable.send({"command": "unsubscribe", "identifier": ident})
    # The unsubscribe is handled before this later frame on the same socket.
    await vcable.send({"command": "unsubscribe", "identifier": "never-subscribed"})
    await asyncio.sleep(0.1)
    second = await fast_visitor.send("after unsubscribe")
    await acable.wait_event("message.created", lambda d: d["id"] == second["id"])
    await asyncio.sleep(0.2)
    assert [e["data"]["id"] for e in vcable.events("message.created")] == [first["id"]]
    assert not vcable.closed.is_set()

    # Subscribing again on the same socket works and delivers again.
    confirms = len([f for f in vcable.frames if f.get("type") == "confirm_subscription"])
    await vcable.send({"command": "subscribe", "identifier": ident})
    await vcable.wait_for(
        lambda _f: (
            len([f for f in vcable.frames if f.get("type") == "confirm_subscription"]) > confirms
        )
    )
    third = await fast_visitor.send("subscribed again")
    await vcable.wait_event("message.created", lambda d: d["id"] == third["id"])
    await vcable.close()
    await acable.close()


async def check_repeated_subscribe_is_confirmed_once_and_delivers_once(
    fast_client: TestClient, fast_visitor: Visitor
) -> None:
    ident = visitor_identifier(fast_visitor.pubsub_token)  # type: ignore[arg-type]
    cable = await CableClient.connect(fast_client)
    await cable.subscribe(ident)
    await cable.send({"command": "subscribe", "identifier": ident})
    sent = await fast_visitor.send("once")
    await cable.wait_event("message.created", lambda d: d["id"] == sent["id"])
    await asyncio.sleep(0.2)
    assert len(cable.events("message.created")) == 1
    assert len([f for f in cable.frames if f.get("type") == "confirm_subscription"]) == 1
    await cable.close()


# -- update_presence ------------------------------------------------------------------------


async def check_update_presence_answers_presence_update(
    fast_client: TestClient, fast_world: World, fast_visitor: Visitor
) -> None:
    vident = visitor_identifier(fast_visitor.pubsub_token)  # type: ignore[arg-type]
    vcable = await CableClient.connect(fast_client)
    await vcable.subscribe(vident)
    await vcable.wait_event("presence.update")
    acable = await _agent(fast_client, fast_world)
    await acable.wait_event("presence.update")

    aident = next(f["identifier"] for f in acable.frames if f.get("type") == "confirm_subscription")
    for cable, ident in ((vcable, vident), (acable, aident)):
        before = len(cable.events("presence.update"))
        await cable.send(
            {
                "command": "message",
                "identifier": ident,
                "data": json.dumps({"action": "update_presence"}),
            }
        )
        await cable.wait_for(lambda _f, c=cable, n=before: len(c.events("presence.update")) > n)

    visitor_view = vcable.events("presence.update")[-1]["data"]
    agent_view = acable.events("presence.update")[-1]["data"]
    agent_id, admin_id = str(fast_world.agent["id"]), str(fast_world.admin["id"])
    for data in (visitor_view, agent_view):
        assert data["account_id"] == fast_world.account["id"]
        assert set(data["users"]) == {agent_id, admin_id}
        assert all(isinstance(k, str) for k in data["users"])
        assert data["users"][agent_id] == fast_world.agent["availability"]
        assert data["users"][admin_id] == "offline"
    assert "contacts" not in visitor_view
    assert agent_view["contacts"] == {str(fast_visitor.contact_id): "online"}
    await vcable.close()
    await acable.close()


async def check_presence_goes_only_to_the_subscriber(
    fast_client: TestClient, fast_world: World, fast_visitor: Visitor
) -> None:
    acable = await _agent(fast_client, fast_world)
    await acable.wait_event("presence.update")
    count = len(acable.events("presence.update"))
    vcable = await _visitor_cable(fast_client, fast_visitor)
    await vcable.wait_event("presence.update")
    sent = await fast_visitor.send("sync point")
    await acable.wait_event("message.created", lambda d: d["id"] == sent["id"])
    assert len(acable.events("presence.update")) == count
    await vcable.close()
    await acable.close()


async def check_unknown_action_and_unsubscribed_identifier_are_ignored(
    fast_client: TestClient, fast_visitor: Visitor
) -> None:
    ident = visitor_identifier(fast_visitor.pubsub_token)  # type: ignore[arg-type]
    cable = await _visitor_cable(fast_client, fast_visitor)
    await cable.send(
        {"command": "message", "identifier": ident, "data": json.dumps({"action": "speak"})}
    )
    await cable.send(
        {
            "command": "message",
            "identifier": visitor_identifier("someone-else"),
            "data": json.dumps({"action": "update_presence"}),
        }
    )
    sent = await fast_visitor.send("still here")
    await cable.wait_event("message.created", lambda d: d["id"] == sent["id"])
    assert not cable.closed.is_set()
    await cable.close()


# -- limits ---------------------------------------------------------------------------------


async def check_subscriptions_beyond_the_limit_are_rejected(
    fast_client: TestClient, fast_visitor: Visitor
) -> None:
    """max_subscriptions_per_socket=3 here. Identifiers differing only in spacing are distinct
    subscriptions, as ActionCable keys them by the string."""
    assert fast_client.app[SERVICES].settings.max_subscriptions_per_socket == 3
    token = fast_visitor.pubsub_token
    idents = [
        f'{{"channel":"RoomChannel","pubsub_token":"{token}"}}',
        f'{{"channel": "RoomChannel", "pubsub_token": "{token}"}}',
        f'{{"pubsub_token":"{token}","channel":"RoomChannel"}}',
        f'{{ "pubsub_token": "{token}", "channel": "RoomChannel" }}',
        f'{{"channel":"RoomChannel",  "pubsub_token":"{token}"}}',
    ]
    cable = await CableClient.connect(fast_client)
    for ident in idents[:3]:
        await cable.subscribe(ident)
    for ident in idents[3:]:
        await cable.subscribe(ident, expect="reject_subscription")
    sent = await fast_visitor.send("to three subscriptions")
    for ident in idents[:3]:
        await cable.wait_for(
            lambda f, i=ident: (
                f.get("identifier") == i
                and f.get("message", {}).get("event") == "message.created"
                and f["message"]["data"]["id"] == sent["id"]
            )
        )
    await asyncio.sleep(0.2)
    delivered = [
        f["identifier"]
        for f in cable.frames
        if isinstance(f.get("message"), dict) and f["message"].get("event") == "message.created"
    ]
    assert sorted(delivered) == sorted(idents[:3])
    # Freeing a slot lets a new subscription in.
    await cable.send({"command": "unsubscribe", "identifier": idents[0]})
    seen = len(cable.frames)
    await cable.send({"command": "subscribe", "identifier": idents[3]})
    answer = await cable.wait_for(
        lambda f: f.get("identifier") == idents[3] and cable.frames.index(f) >= seen
    )
    assert answer["type"] == "confirm_subscription"
    await cable.close()


# -- malformed frames -----------------------------------------------------------------------


async def check_malformed_frames_never_hurt_the_hub_or_other_sockets(
    fast_client: TestClient, fast_world: World, fast_visitor: Visitor
) -> None:
    hub = _hub(fast_client)
    ident = visitor_identifier(fast_visitor.pubsub_token)  # type: ignore[arg-type]
    observer = await _agent(fast_client, fast_world)
    bystander = await _visitor_cable(fast_client, fast_visitor)
    attacker = await _visitor_cable(fast_client, fast_visitor)

    async def still_delivering(label: str) -> None:
        sent = await fast_visitor.send(f"after {label}")
        for cable in (observer, bystander):
            await cable.wait_event("message.created", lambda d, i=sent["id"]: d["id"] == i)

    junk_text = [
        "",
        "null",
        "42",
        '"a string"',
        "{",
        "[" * 5000,
        '{"command":null}',
        '{"command":["subscribe"],"identifier":"x"}',
        '{"command":"subscribe","identifier":{"channel":"RoomChannel"}}',
        '{"command":"subscribe","identifier":123}',
        '{"command":"subscribe","identifier":""}',
        json.dumps({"command": "subscribe", "identifier": "x" * 5000}),
        json.dumps({"command": "message", "identifier": ident, "data": {"action": "x"}}),
        json.dumps({"command": "message", "identifier": ident, "data": "[1]"}),
        json.dumps({"command": "message", "identifier": ident, "data": "{bad"}),
        json.dumps({"command": "message", "identifier": ident}),
        json.dumps({"command": "message", "identifier": "not-mine", "data": "{}"}),
        json.dumps({"command": "unsubscribe", "identifier": "not-mine"}),
        json.dumps({"command": "unsubscribe"}),
        "\u0000\u0001\u2028",
    ]
    for junk in junk_text[:12]:
        await attacker.ws.send_str(junk)
    await attacker.ws.send_bytes(b"\x00\xff\xfe binary junk \x81\x82")
    await attacker.ws.send_bytes(b'{"command":"subscribe","identifier":"x"}')
    await still_delivering("first batch of junk")
    assert not attacker.closed.is_set()

    # Every frame above was answered without closing; the attacker still gets its events.
    sent = await fast_visitor.send("attacker still subscribed")
    await attacker.wait_event("message.created", lambda d: d["id"] == sent["id"])

    # A flood of bad frames ends that socket (invalid_request), and only that socket.
    for junk in junk_text[12:] * 3:
        await attacker.ws.send_str(junk)
    await asyncio.wait_for(attacker.closed.wait(), 5)
    assert {"type": "disconnect", "reason": "invalid_request", "reconnect": False} in (
        attacker.frames
    )
    await still_delivering("protocol error flood")
    assert len(hub.connections) == 2
    await observer.close()
    await bystander.close()


async def check_huge_and_invalid_utf8_frames_close_only_the_sender(
    fast_client: TestClient, fast_world: World, fast_visitor: Visitor
) -> None:
    hub = _hub(fast_client)
    observer = await _agent(fast_client, fast_world)
    bystander = await _visitor_cable(fast_client, fast_visitor)

    async def still_delivering(label: str) -> None:
        sent = await fast_visitor.send(f"after {label}")
        for cable in (observer, bystander):
            await cable.wait_event("message.created", lambda d, i=sent["id"]: d["id"] == i)

    huge = await _visitor_cable(fast_client, fast_visitor)
    frame = json.dumps({"command": "subscribe", "identifier": "x", "pad": "y" * (64 * 1024 + 10)})
    await huge.ws.send_str(frame)
    await asyncio.wait_for(huge.closed.wait(), 5)
    await still_delivering("a frame over 64 KB")

    broken = await _visitor_cable(fast_client, fast_visitor)
    await broken.ws.send_frame(b'{"command":"\xff\xfe"}', aiohttp.WSMsgType.TEXT)
    await asyncio.wait_for(broken.closed.wait(), 5)
    await still_delivering("invalid UTF-8 in a text frame")

    assert len(hub.connections) == 2
    subs = {sub for subs in hub.channels.values() for sub in subs}
    assert {sub.conn for sub in subs} == hub.connections
    await observer.close()
    await bystander.close()


async def check_abrupt_disconnects_leave_no_subscriptions_behind(
    fast_client: TestClient, fast_world: World, fast_visitor: Visitor
) -> None:
    hub = _hub(fast_client)
    observer = await _agent(fast_client, fast_world)
    for _ in range(5):
        cable = await _visitor_cable(fast_client, fast_visitor)
        cable.ws._conn.transport.abort()  # type: ignore[union-attr]
        await asyncio.wait_for(cable.closed.wait(), 5)
    deadline = time.monotonic() + 5
    while len(hub.connections) > 1:
        assert time.monotonic() < deadline, hub.connections
        await asyncio.sleep(0.02)
    token_channel = f"contact:{fast_visitor.pubsub_token}"
    assert token_channel not in hub.channels
    sent = await fast_visitor.send("after the aborts")
    await observer.wait_event("message.created", lambda d: d["id"] == sent["id"])
    await observer.close()


def test_protocol_constants() -> None:
    assert protocol.SUBPROTOCOL == "actioncable-v1-json"
    assert json.loads(protocol.SERVER_RESTART) == {
        "type": "disconnect",
        "reason": "server_restart",
        "reconnect": True,
    }
