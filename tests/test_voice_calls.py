"""Voice calls, whole (issue 18), over real HTTP against a fake ElevenLabs on 127.0.0.1, on
both databases: the fork widget's calls replayed as it makes them, the call's state reaching
agents as conversation.updated, ElevenLabs' transcript filling the turns the browser never
posted (at the end of the call, from the poll, from the signed post-call webhook), a call
whose browser vanished ended by the server, repeated turns, and one visitor never reaching
another's call."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.services import SERVICES
from server.store import accounts as accounts_store
from tests.cable import CableClient, agent_identifier
from tests.conftest import Visitor, make_settings
from tests.fake_elevenlabs import FakeElevenLabs, conversation_json, webhook_signature
from tests.test_admin_cli import admin_in_process

API_KEY = "sk_test_SUPERSECRET_4f9a1c"
AGENT_ID = "agent_01testagent"
SECRET = "wsec_" + "x" * 24
CONV = "/api/v1/widget/conversations"

# The call of these tests, as ElevenLabs transcribed it.
TRANSCRIPT = [
    ("agent", "Hello! How can I help you today?"),
    ("user", "What are your business hours?"),
    ("agent", "We open at nine and close at six."),
    ("user", "Are you open on Saturdays?"),
    ("agent", "Yes, from ten to two."),
    ("user", "Great, thank you."),
    ("agent", "You are welcome. Goodbye!"),
]


def source(role: str) -> str:
    return "user" if role == "user" else "ai"


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """`check()`'s first truthy answer, polled until `timeout` (then the test fails)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(api_key=API_KEY, agent_id=AGENT_ID) as server:
        yield server


@pytest.fixture
def heartbeat_timeout() -> float:
    return 20.0


@pytest.fixture
async def client(
    aiohttp_client: Any, db_url: str, tmp_path: Any, fake: FakeElevenLabs, heartbeat_timeout: float
) -> TestClient:
    settings = make_settings(
        db_url,
        tmp_path,
        elevenlabs_base_url=fake.base_url,
        elevenlabs_timeout=5.0,
        voice_heartbeat_timeout=heartbeat_timeout,
        voice_reconcile_retry=0.05,
        voice_reconcile_attempts=3,
    )
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def world(client: TestClient) -> dict[str, Any]:
    async def op(conn: Any) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Visual Graphx")
        inbox = await accounts_store.create_inbox(
            conn,
            account_id=account["id"],
            name="Voice site",
            elevenlabs_agent_id=AGENT_ID,
            elevenlabs_api_key=API_KEY,
            elevenlabs_webhook_secret=SECRET,
        )
        agent = await accounts_store.create_agent(
            conn,
            account_id=account["id"],
            name="Priya",
            email=f"p-{secrets.token_hex(4)}@x.io",
            inbox_ids=[inbox["id"]],
        )
        return {"account": account, "inbox": inbox, "agent": agent}

    return await client.app[SERVICES].db.write(op)


@pytest.fixture
async def visitor(client: TestClient, world: dict[str, Any]) -> Visitor:
    return await Visitor(client, world["inbox"]["website_token"]).start()


class Widget:
    """The fork's ElevenLabsVoiceButton.vue, request for request: `website_token` and the
    `cw_conversation` token in the query, the token again as X-Auth-Token (axios), JSON `{}`
    bodies on its POSTs."""

    def __init__(self, visitor: Visitor) -> None:
        self.v = visitor

    def url(self, action: str, query: str = "") -> str:
        url = f"{CONV}/{action}?{query}&" if query else f"{CONV}/{action}?"
        url += f"website_token={self.v.website_token}"
        return url + f"&cw_conversation={self.v.auth_token}"

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.v.auth_token or "", "Accept": "application/json"}

    async def get(self, action: str, query: str = "") -> tuple[int, Any]:
        resp = await self.v.client.get(self.url(action, query), headers=self.headers())
        return resp.status, await resp.json()

    async def post(self, action: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.v.client.post(
            self.url(action),
            data=orjson.dumps({} if body is None else body),
            headers={**self.headers(), "Content-Type": "application/json"},
        )
        return resp.status, await resp.json()


async def voice_messages(visitor: Visitor) -> list[dict[str, Any]]:
    page = await (await visitor.get("messages")).json()
    return [m for m in page["payload"] if m["content_attributes"].get("voice_transcript")]


def seconds_old(iso: str) -> float:
    return time.time() - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_the_fork_widget_calls_replayed(
    client: TestClient, fake: FakeElevenLabs, world: dict[str, Any], visitor: Visitor
) -> None:
    """A whole call as the fork's widget makes it: every call 200 with the fork's fields."""
    w = Widget(visitor)
    for _ in range(3):  # on every mount
        status, body = await w.get("voice_call_active")
        assert status == 200
        assert body == {
            "active": False,
            "source": None,
            "contact_id": visitor.contact_id,
            "contact_inbox_id": body["contact_inbox_id"],
            "last_heartbeat": None,
        }
    status, config = await w.get("inbox_config")
    assert status == 200
    inbox = config["payload"]["inbox"]
    assert (
        inbox["voice_agent_provider"] == "elevenlabs"
        and "voice_agent" in inbox["selected_feature_flags"]
    )
    assert (
        API_KEY not in orjson.dumps(config).decode()
        and AGENT_ID not in orjson.dumps(config).decode()
    )

    status, signed = await w.get("voice_signed_url")
    assert status == 200
    assert signed["signed_url"] == fake.signed_url_for(AGENT_ID)
    assert signed["agent_name"] == "Priya"  # the inbox's first agent
    assert signed["brand_name"] == "Visual Graphx"  # the account's name
    assert "avatar_url" in signed and signed["account_id"] == world["account"]["id"]
    assert "conversation_id" not in signed  # none yet
    assert API_KEY not in orjson.dumps(signed).decode()

    # onConnect: the first heartbeat starts the call, then the link.
    status, hb = await w.post("voice_heartbeat")
    assert status == 200 and hb["ok"] is True and hb["contact_id"] == visitor.contact_id
    el_id = "conv_01replayed"
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT[:3])
    status, linked = await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    assert status == 200
    assert linked["ok"] is True and linked["elevenlabs_conversation_id"] == el_id
    display_id = linked["chatwoot_conversation_id"]
    assert isinstance(display_id, int)

    # onMessage: turns without event_id.
    for role, text in TRANSCRIPT[:2]:
        status, turn = await w.post("voice_transcript", {"source": source(role), "content": text})
        assert status == 200 and turn["conversation_id"] == display_id and "duplicate" not in turn

    status, active = await w.get("voice_call_active")
    assert status == 200 and active["active"] is True
    assert seconds_old(active["last_heartbeat"]) < 10  # what the widget checks

    status, polled = await w.get("voice_transcript_poll", "synced_count=0&last_conv_id=")
    assert status == 200
    assert polled["conversation_id"] == el_id and polled["total_count"] == 3
    assert [t["message"] for t in polled["turns"]] == [m for _, m in TRANSCRIPT[:3]]
    assert polled["written"] == 1  # the third turn, which the browser had not posted
    status, polled = await w.get("voice_transcript_poll", f"synced_count=3&last_conv_id={el_id}")
    assert status == 200 and polled["turns"] == [] and polled["written"] == 0

    status, hist = await w.get("voice_history", "limit=20")
    assert status == 200 and hist["has_history"] is True and hist["conversation_id"] == display_id
    assert [(line["role"], line["content"]) for line in hist["lines"]] == TRANSCRIPT[:3]

    status, ended = await w.post("voice_call_ended")
    assert status == 200 and ended["ok"] is True and ended["ended"] is True
    # Another tab's popup, still heartbeating, is told to stop; once.
    status, hb = await w.post("voice_heartbeat")
    assert status == 200 and hb == {"ok": False, "end_requested": True}
    status, active = await w.get("voice_call_active")
    assert status == 200 and active["active"] is False
    await client.app[SERVICES].voice.idle()

    # A new call after that: voice_signed_url clears the old end, so the new call's first
    # heartbeat starts it instead of ending it.
    await w.post("voice_call_ended")
    status, signed = await w.get("voice_signed_url")
    assert status == 200 and signed["conversation_id"] == display_id
    status, hb = await w.post("voice_heartbeat")
    assert status == 200 and hb["ok"] is True


async def test_a_call_missing_half_its_turns_ends_with_the_whole_transcript(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    """The browser posted every other turn; at the end of the call the server writes the
    others from ElevenLabs' transcript, in order, none twice, and again writes nothing."""
    w = Widget(visitor)
    el_id = "conv_01halfturns"
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    for i, (role, text) in enumerate(TRANSCRIPT):
        if i % 2 == 1:
            await w.post("voice_transcript", {"source": source(role), "content": text})
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT)
    status, _ = await w.post("voice_call_ended")
    assert status == 200
    voice = client.app[SERVICES].voice
    await voice.idle()

    msgs = await until(lambda: _when(voice_messages(visitor), lambda m: len(m) >= len(TRANSCRIPT)))
    assert len(msgs) == len(TRANSCRIPT)  # none twice
    by_turn = sorted(msgs, key=lambda m: m["content_attributes"]["turn"])
    assert [(m["content_attributes"]["role"], m["content"]) for m in by_turn] == [
        (source(r), t) for r, t in TRANSCRIPT
    ]
    added = [
        m
        for m in msgs
        if m["id"] > max(x["id"] for x in msgs if x["content_attributes"]["turn"] % 2)
    ]
    assert [m["content_attributes"]["turn"] for m in added] == [0, 2, 4, 6]  # in order
    assert {m["message_type"] for m in by_turn if m["content_attributes"]["role"] == "user"} == {0}

    # The webhook, the poll and another reconcile write nothing more.
    body = orjson.dumps({"type": "post_call_transcription", "data": fake.conversations[el_id]})
    resp = await client.post(
        "/webhooks/elevenlabs",
        data=body,
        headers={"ElevenLabs-Signature": webhook_signature(body, SECRET)},
    )
    assert resp.status == 200 and (await resp.json())["written"] == 0
    status, polled = await w.get("voice_transcript_poll", "synced_count=0")
    assert status == 200 and polled["written"] == 0
    assert len(await voice_messages(visitor)) == len(TRANSCRIPT)


async def _when(found: Awaitable[Any], ok: Callable[[Any], bool]) -> Any:
    value = await found
    return value if ok(value) else None


@pytest.mark.parametrize("heartbeat_timeout", [1.0])
async def test_a_browser_that_vanishes_mid_call(
    client: TestClient, fake: FakeElevenLabs, world: dict[str, Any], visitor: Visitor
) -> None:
    """Heartbeats stop (the tab crashed): the server ends the call (heartbeat_lost), agents
    see it end, and the transcript is completed from ElevenLabs'."""
    agent = world["agent"]
    cable = await CableClient.connect(client)
    await cable.subscribe(
        agent_identifier(agent["pubsub_token"], world["account"]["id"], agent["id"])
    )
    w = Widget(visitor)
    el_id = "conv_01vanished"
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT[:4])
    await w.post("voice_heartbeat")
    status, linked = await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    assert status == 200
    display_id = linked["chatwoot_conversation_id"]
    live = await cable.wait_event(
        "conversation.updated",
        lambda d: (
            d["id"] == display_id
            and (d["voice_call"] or {}).get("elevenlabs_conversation_id") == el_id
        ),
    )
    assert live["voice_call"]["live"] is True
    await w.post("voice_transcript", {"source": "ai", "content": TRANSCRIPT[0][1]})
    # ... and then nothing more from the browser.
    ended = await cable.wait_event(
        "conversation.updated",
        lambda d: d["id"] == display_id and d["voice_call"] and not d["voice_call"]["live"],
        timeout=15,
    )
    assert ended["voice_call"]["end_reason"] == "heartbeat_lost"
    msgs = await until(lambda: _when(voice_messages(visitor), lambda m: len(m) == 4), timeout=15)
    assert [m["content"] for m in sorted(msgs, key=lambda m: m["content_attributes"]["turn"])] == [
        t for _, t in TRANSCRIPT[:4]
    ]
    status, active = await w.get("voice_call_active")
    assert active["active"] is False
    # The tab back from its stall is told the call is over.
    status, hb = await w.post("voice_heartbeat")
    assert hb == {"ok": False, "end_requested": True}
    await cable.close()


async def test_call_start_link_and_end_reach_agents(
    client: TestClient, world: dict[str, Any], visitor: Visitor
) -> None:
    agent = world["agent"]
    cable = await CableClient.connect(client)
    await cable.subscribe(
        agent_identifier(agent["pubsub_token"], world["account"]["id"], agent["id"])
    )
    w = Widget(visitor)
    await w.post("voice_heartbeat")
    started = await cable.wait_event("conversation.updated", lambda d: d["voice_call"] is not None)
    assert (
        started["voice_call"]["live"] is True
        and started["voice_call"]["elevenlabs_conversation_id"] is None
    )
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": "conv_01agents"})
    await cable.wait_event(
        "conversation.updated",
        lambda d: (d["voice_call"] or {}).get("elevenlabs_conversation_id") == "conv_01agents",
    )
    await w.post("voice_call_ended")
    ended = await cable.wait_event(
        "conversation.updated", lambda d: d["voice_call"] and not d["voice_call"]["live"]
    )
    assert ended["voice_call"]["end_reason"] == "widget"
    # The agent's conversation list shows the call too.
    resp = await client.get(
        f"/api/v1/accounts/{world['account']['id']}/conversations",
        headers={"api_access_token": agent["access_token"]},
    )
    listed = (await resp.json())["data"]["payload"]
    assert listed[0]["voice_call"]["end_reason"] == "widget"
    await cable.close()


async def test_repeated_turns_without_event_id(client: TestClient, visitor: Visitor) -> None:
    w = Widget(visitor)
    await w.post("voice_heartbeat")
    _, first = await w.post("voice_transcript", {"source": "user", "content": "Hello there"})
    _, again = await w.post("voice_transcript", {"source": "user", "content": "Hello there"})
    assert again == {
        "id": first["id"],
        "conversation_id": first["conversation_id"],
        "duplicate": True,
    }
    # Another role, or other words, is a new turn; with an event_id, today's rule.
    _, ai = await w.post("voice_transcript", {"source": "ai", "content": "Hello there"})
    assert "duplicate" not in ai and ai["id"] != first["id"]
    _, other = await w.post("voice_transcript", {"source": "user", "content": "Hello again"})
    assert "duplicate" not in other
    body = {"source": "user", "content": "Hello again", "event_id": "e-1"}
    _, keyed = await w.post("voice_transcript", body)
    assert "duplicate" not in keyed
    _, keyed_again = await w.post("voice_transcript", body)
    assert keyed_again["duplicate"] is True and keyed_again["id"] == keyed["id"]
    status, _ = await w.post(
        "voice_transcript", {"source": "user", "content": "x", "event_id": "elevenlabs:c:1"}
    )
    assert status == 400
    assert len(await voice_messages(visitor)) == 4


async def test_the_webhook_needs_the_inbox_secret(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    w = Widget(visitor)
    el_id = "conv_01webhook"
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    body = orjson.dumps(
        {"type": "post_call_transcription", "data": conversation_json(el_id, AGENT_ID, TRANSCRIPT)}
    )
    for headers in (
        {},
        {"ElevenLabs-Signature": webhook_signature(body, "wrong secret")},
        {"ElevenLabs-Signature": webhook_signature(body, SECRET, int(time.time()) - 3600)},
        {"ElevenLabs-Signature": "t=abc,v0=00"},
    ):
        resp = await client.post("/webhooks/elevenlabs", data=body, headers=headers)
        assert resp.status == 401, await resp.text()
    assert await voice_messages(visitor) == []
    tampered = body.replace(b"Goodbye", b"Gotcha!")
    resp = await client.post(
        "/webhooks/elevenlabs",
        data=tampered,
        headers={"ElevenLabs-Signature": webhook_signature(body, SECRET)},
    )
    assert resp.status == 401
    resp = await client.post(
        "/webhooks/elevenlabs",
        data=body,
        headers={"ElevenLabs-Signature": webhook_signature(body, SECRET)},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["written"] == len(TRANSCRIPT)
    # ElevenLabs says the call is over: the call ended.
    _, active = await w.get("voice_call_active")
    assert active["active"] is False
    msgs = await voice_messages(visitor)
    assert [m["content"] for m in msgs] == [t for _, t in TRANSCRIPT]  # in order, by id
    await client.app[SERVICES].voice.idle()
    assert len(await voice_messages(visitor)) == len(TRANSCRIPT)
    # Unknown conversations and bad bodies: clear 4xx.
    other = orjson.dumps({"type": "post_call_transcription", "data": {"conversation_id": "conv_x"}})
    resp = await client.post(
        "/webhooks/elevenlabs",
        data=other,
        headers={"ElevenLabs-Signature": webhook_signature(other, SECRET)},
    )
    assert resp.status == 404
    resp = await client.post(
        "/webhooks/elevenlabs", data=b"not json", headers={"ElevenLabs-Signature": "t=1,v0=0"}
    )
    assert resp.status == 400


async def test_one_visitor_never_reaches_another_call(
    client: TestClient, fake: FakeElevenLabs, world: dict[str, Any], visitor: Visitor
) -> None:
    """The poll reads only the visitor's own linked conversation (never "the newest of the
    agent"), and a linked id cannot be claimed by another visitor."""
    other = await Visitor(client, world["inbox"]["website_token"]).start()
    mine, theirs = Widget(visitor), Widget(other)
    fake.conversations["conv_01mine"] = conversation_json("conv_01mine", AGENT_ID, TRANSCRIPT[:2])
    await mine.post("voice_heartbeat")
    await mine.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": "conv_01mine"})
    # The other visitor, with no call: the poll fetches nothing and writes nothing.
    status, polled = await theirs.get("voice_transcript_poll", "synced_count=0")
    assert status == 200 and polled == {"turns": [], "conversation_id": None, "total_count": 0}
    assert fake.conversation_requests() == []
    status, body = await theirs.post(
        "voice_link_elevenlabs", {"elevenlabs_conversation_id": "conv_01mine"}
    )
    assert status == 409, body
    _, active = await theirs.get("voice_call_active")
    assert active["active"] is False
    # Without a token: nothing found, nothing scanned.
    resp = await client.get(
        f"{CONV}/voice_call_active?website_token={world['inbox']['website_token']}"
    )
    assert resp.status == 200 and (await resp.json())["active"] is False
    resp = await client.post(
        f"{CONV}/voice_link_elevenlabs?website_token={world['inbox']['website_token']}",
        json={"elevenlabs_conversation_id": "conv_01other"},
    )
    assert resp.status == 404
    # Bad ids: 400.
    for bad in ("", "   ", None, 12, "a" * 200, "conv/../x"):
        status, _ = await mine.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": bad})
        assert status == 400, bad


async def test_elevenlabs_failing_and_the_metrics(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    """A poll while ElevenLabs fails is a clear 502 and writes nothing; the end of the call
    still ends it (its fetch failing is counted and logged); /metrics counts calls by how
    they ended and the turns reconciled."""
    w = Widget(visitor)
    el_id = "conv_01failing"
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT[:3])
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    fake.mode = "error"
    status, body = await w.get("voice_transcript_poll", "synced_count=0")
    assert status == 502 and body == {"error": "ElevenLabs API responded 500"}
    status, ended = await w.post("voice_call_ended")
    assert status == 200 and ended["ended"] is True
    voice = client.app[SERVICES].voice
    await voice.idle()
    assert voice.reconcile_failures >= 2
    assert await voice_messages(visitor) == []

    # ElevenLabs is back: the next call's end completes it.
    fake.mode = "ok"
    await w.get("voice_signed_url")
    await w.post("voice_heartbeat")
    el_two = "conv_01second"
    fake.conversations[el_two] = conversation_json(el_two, AGENT_ID, TRANSCRIPT[:2])
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_two})
    await w.post("voice_call_ended")
    await voice.idle()
    assert len(await voice_messages(visitor)) == 2
    metrics = await (await client.get("/metrics")).text()
    assert "chat_voice_calls_started_total 2.0" in metrics
    assert 'chat_voice_calls_ended_total{reason="widget"} 2.0' in metrics
    assert "chat_voice_turns_reconciled_total 2.0" in metrics
    # The webhook's body is bounded like every body.
    big = b'{"data": {"conversation_id": "' + b"x" * (2 << 20) + b'"}}'
    resp = await client.post(
        "/webhooks/elevenlabs", data=big, headers={"ElevenLabs-Signature": "t=1,v0=0"}
    )
    assert resp.status == 413


async def test_first_heartbeat_and_link_sent_at_once(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    """The widget's onConnect fires its first heartbeat and the link without waiting for
    either: one call, linked, whichever arrives first."""
    w = Widget(visitor)
    el_id = "conv_01atonce"
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT[:2])
    (hb_status, hb), (link_status, linked) = await asyncio.gather(
        w.post("voice_heartbeat"),
        w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id}),
    )
    assert hb_status == 200 and hb["ok"] is True
    assert link_status == 200 and linked["ok"] is True
    _, active = await w.get("voice_call_active")
    assert active["call_id"] == hb["call_id"]
    status, polled = await w.get("voice_transcript_poll", "synced_count=0")
    assert status == 200 and polled["conversation_id"] == el_id and polled["written"] == 2


def said(msgs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["content_attributes"]["role"], m["content"]) for m in msgs]


async def test_missed_turns_take_their_place_in_every_list(
    client: TestClient, fake: FakeElevenLabs, world: dict[str, Any], visitor: Visitor
) -> None:
    """The turns ElevenLabs' transcript adds are dated between the turns around them, so the
    widget's list, the agent's list and voice_history show the call in the order it was said
    (and a client re-sorting by created_at, as Chatwoot's widget does, keeps that order);
    `after=` still hands a reconnecting widget every added turn, by id."""
    w = Widget(visitor)
    el_id = "conv_01inplace"
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    posted_ids = []
    for i, (role, text) in enumerate(TRANSCRIPT):
        if i % 2 == 1:
            _, turn = await w.post("voice_transcript", {"source": source(role), "content": text})
            posted_ids.append(turn["id"])
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT)
    await w.post("voice_call_ended")
    await client.app[SERVICES].voice.idle()

    expected = [(source(r), t) for r, t in TRANSCRIPT]
    msgs = await until(lambda: _when(voice_messages(visitor), lambda m: len(m) >= len(TRANSCRIPT)))
    assert said(msgs) == expected
    stamps = [m["created_at"] for m in msgs]
    assert stamps == sorted(stamps)

    display_id = msgs[0]["conversation_id"]
    resp = await client.get(
        f"/api/v1/accounts/{world['account']['id']}/conversations/{display_id}/messages",
        headers={"api_access_token": world["agent"]["access_token"]},
    )
    assert resp.status == 200
    agents = [m for m in (await resp.json())["payload"] if m["content_attributes"].get("role")]
    assert said(agents) == expected

    status, history = await w.get("voice_history", "limit=20")
    assert status == 200
    lines = [("user" if x["role"] == "user" else "ai", x["content"]) for x in history["lines"]]
    assert lines == expected

    # A widget that was offline since the last turn it saw gets the added ones by id.
    resp = await visitor.get(f"messages?after={max(posted_ids)}")
    added = [m for m in (await resp.json())["payload"] if m["content_attributes"].get("role")]
    assert sorted(m["content_attributes"]["turn"] for m in added) == [0, 2, 4, 6]


async def test_a_turn_posted_before_the_first_heartbeat_is_not_written_twice(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    """The SDK's greeting can reach voice_transcript before the widget's first heartbeat has
    started the call: the call counts it as its own turn when it reconciles."""
    w = Widget(visitor)
    el_id = "conv_01early"
    role, text = TRANSCRIPT[0]
    status, early = await w.post("voice_transcript", {"source": source(role), "content": text})
    assert status == 200
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    for role, text in TRANSCRIPT[1:3]:
        await w.post("voice_transcript", {"source": source(role), "content": text})
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT)
    await w.post("voice_call_ended")
    await client.app[SERVICES].voice.idle()

    msgs = await until(lambda: _when(voice_messages(visitor), lambda m: len(m) >= len(TRANSCRIPT)))
    assert said(msgs) == [(source(r), t) for r, t in TRANSCRIPT]
    assert msgs[0]["id"] == early["id"]


async def call_with_turns(w: Widget, el_id: str, turns: list[tuple[str, str]]) -> None:
    """A call started, linked to `el_id`, and `turns` posted by the browser."""
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    for role, text in turns:
        await w.post("voice_transcript", {"source": source(role), "content": text})


async def test_a_turn_posted_after_the_call_ended_is_not_written_twice(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    """The last turn's POST can arrive after voice_call_ended, and after the server has
    already written that turn from ElevenLabs' transcript: it gets the written turn back."""
    w = Widget(visitor)
    el_id = "conv_01late"
    await call_with_turns(w, el_id, TRANSCRIPT[:-1])
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT)
    await w.post("voice_call_ended")
    await client.app[SERVICES].voice.idle()
    msgs = await until(lambda: _when(voice_messages(visitor), lambda m: len(m) >= len(TRANSCRIPT)))

    role, text = TRANSCRIPT[-1]
    status, late = await w.post("voice_transcript", {"source": source(role), "content": text})
    assert status == 200
    assert late == {
        "id": msgs[-1]["id"],
        "conversation_id": msgs[-1]["conversation_id"],
        "duplicate": True,
    }
    assert said(await voice_messages(visitor)) == [(source(r), t) for r, t in TRANSCRIPT]


async def test_a_late_turn_before_the_reconciliation_is_counted_once(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    """The last turn's POST arrives after voice_call_ended but before ElevenLabs' transcript
    is fetched (here: not yet available): it joins the ended call, and the webhook that
    brings the transcript later matches it instead of writing it again."""
    w = Widget(visitor)
    el_id = "conv_01latefirst"
    await call_with_turns(w, el_id, TRANSCRIPT[:-1])
    await w.post("voice_call_ended")  # the fake knows no transcript yet: a 404
    await client.app[SERVICES].voice.idle()
    role, text = TRANSCRIPT[-1]
    status, late = await w.post("voice_transcript", {"source": source(role), "content": text})
    assert status == 200 and "duplicate" not in late

    data = conversation_json(el_id, AGENT_ID, TRANSCRIPT)
    body = orjson.dumps({"type": "post_call_transcription", "data": data})
    resp = await client.post(
        "/webhooks/elevenlabs",
        data=body,
        headers={"ElevenLabs-Signature": webhook_signature(body, SECRET)},
    )
    assert resp.status == 200 and (await resp.json())["written"] == 0
    assert said(await voice_messages(visitor)) == [(source(r), t) for r, t in TRANSCRIPT]


async def test_turns_of_a_call_the_browser_never_posted_are_dated_when_said(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    """A browser that posted no turn at all: every turn comes from ElevenLabs' transcript,
    dated at the call's start plus the turn's time_in_call_secs, never in the future."""
    w = Widget(visitor)
    el_id = "conv_01nothing"
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    data = conversation_json(el_id, AGENT_ID, TRANSCRIPT)
    fake.conversations[el_id] = data
    await w.post("voice_call_ended")
    await client.app[SERVICES].voice.idle()

    msgs = await until(lambda: _when(voice_messages(visitor), lambda m: len(m) >= len(TRANSCRIPT)))
    assert said(msgs) == [(source(r), t) for r, t in TRANSCRIPT]
    start = data["metadata"]["start_time_unix_secs"]
    assert [m["created_at"] for m in msgs] == [
        start + turn["time_in_call_secs"] for turn in data["transcript"]
    ]
    assert all(m["created_at"] <= time.time() for m in msgs)


async def test_an_ended_call_is_fetched_again_until_elevenlabs_has_all_of_it(
    client: TestClient, fake: FakeElevenLabs, visitor: Visitor
) -> None:
    """At the end of the call ElevenLabs is still processing it (half the turns so far),
    then fails once, then has it all: the server keeps what it got, tries again, and ends
    with the whole transcript, none twice; /metrics counts the retries."""
    w = Widget(visitor)
    el_id = "conv_01processing"
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    fake.conversations[el_id] = conversation_json(
        el_id, AGENT_ID, TRANSCRIPT[:4], status="processing"
    )
    answers = iter(["processing", "error", "done"])

    def next_answer() -> None:
        step = next(answers, "done")
        fake.mode = "error" if step == "error" else "ok"
        if step == "done":
            fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT)

    fake.on_conversation = next_answer
    await w.post("voice_call_ended")
    voice = client.app[SERVICES].voice
    await voice.idle()

    msgs = await voice_messages(visitor)
    assert said(msgs) == [(source(r), t) for r, t in TRANSCRIPT]
    assert voice.reconcile_retries == 2
    metrics = await (await client.get("/metrics")).text()
    assert "chat_voice_reconcile_retries_total 2.0" in metrics


async def test_call_writes_are_rate_limited_per_visitor(
    client: TestClient, visitor: Visitor
) -> None:
    """Heartbeats, links and ends are writes: a script looping on them meets a 429 with
    Retry-After, and another visitor is not affected."""
    w = Widget(visitor)
    statuses = []
    for _ in range(200):  # the default budget is 90 at once
        resp = await visitor.client.post(
            w.url("voice_heartbeat"),
            data=b"{}",
            headers={**w.headers(), "Content-Type": "application/json"},
        )
        statuses.append(resp.status)
        if resp.status == 429:
            assert int(resp.headers["Retry-After"]) >= 1
            assert "voice call" in (await resp.json())["error"]
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}
    status, _ = await w.post("voice_call_ended")
    assert status == 429
    other = Widget(await Visitor(client, visitor.website_token).start())
    status, _ = await other.post("voice_heartbeat")
    assert status == 200


async def test_an_operator_rotates_the_webhook_secret_and_the_api_key(
    client: TestClient,
    fake: FakeElevenLabs,
    world: dict[str, Any],
    visitor: Visitor,
    db_url: str,
    tmp_path: Any,
) -> None:
    """`admin set-inbox-voice` changes an inbox's ElevenLabs settings: the next fetch of a
    transcript sends the new API key, the old webhook secret is refused from the next
    delivery, voice_signed_url sees a change within the inbox cache's 5 s; nothing secret is
    printed back, and bad values are refused."""
    inbox = str(world["inbox"]["id"])
    new_secret = "wsec_" + "n" * 24
    fake.api_key = "sk_test_NEWKEY_" + "z" * 12
    code, out, err = await admin_in_process(
        db_url, tmp_path, "set-inbox-voice", "--inbox", inbox,
        "--elevenlabs-webhook-secret", new_secret, "--elevenlabs-api-key", fake.api_key,
    )  # fmt: skip
    assert code == 0, err
    shown = orjson.loads(out)
    assert shown["elevenlabs_webhook_secret_set"] is True
    assert shown["elevenlabs_agent_id"] == AGENT_ID and shown["elevenlabs_api_key_set"] is True
    assert new_secret not in out and fake.api_key not in out

    w = Widget(visitor)
    el_id = "conv_01rotated"
    fake.conversations[el_id] = conversation_json(el_id, AGENT_ID, TRANSCRIPT)
    await w.post("voice_heartbeat")
    await w.post("voice_link_elevenlabs", {"elevenlabs_conversation_id": el_id})
    await w.post("voice_call_ended")
    await client.app[SERVICES].voice.idle()
    assert fake.conversation_requests()[-1]["headers"]["xi-api-key"] == fake.api_key
    assert len(await voice_messages(visitor)) == len(TRANSCRIPT)

    body = orjson.dumps(
        {"type": "post_call_transcription", "data": conversation_json(el_id, AGENT_ID, TRANSCRIPT)}
    )
    for secret, status in ((SECRET, 401), (new_secret, 200)):
        headers = {"ElevenLabs-Signature": webhook_signature(body, secret)}
        resp = await client.post("/webhooks/elevenlabs", data=body, headers=headers)
        assert resp.status == status, await resp.text()

    for args in (
        ("--inbox", inbox),
        ("--inbox", "999999", "--elevenlabs-api-key", "k"),
        ("--inbox", inbox, "--elevenlabs-api-key", "two words"),
    ):
        code, _, err = await admin_in_process(db_url, tmp_path, "set-inbox-voice", *args)
        assert code == 2 and orjson.loads(err)["error"], (args, err)
    # An empty value clears: the inbox has no voice agent any more (the spec page's 422,
    # answered before any budget is spent or ElevenLabs asked).
    code, _, err = await admin_in_process(
        db_url, tmp_path, "set-inbox-voice", "--inbox", inbox, "--elevenlabs-agent-id", ""
    )
    assert code == 0, err

    async def refused() -> Any:
        status, answer = await w.get("voice_signed_url")
        return answer if status == 422 else None

    assert await until(refused) == {"error": "No agent_id configured on this inbox"}
