"""GET /api/v1/widget/conversations/voice_signed_url against a fake ElevenLabs on
127.0.0.1, on both databases: the signed URL, the 422s, the 502s, and the key staying secret."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.services import SERVICES
from server.settings import Settings
from server.store import accounts as accounts_store
from tests.conftest import make_settings
from tests.fake_elevenlabs import FakeElevenLabs

API_KEY = "sk_test_SUPERSECRET_4f9a1c"
AGENT_ID = "agent_01testagent"
PATH = "/api/v1/widget/conversations/voice_signed_url"


@pytest.fixture
async def fake() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(api_key=API_KEY, agent_id=AGENT_ID) as server:
        yield server


@pytest.fixture
async def voice_client(
    aiohttp_client: Any, db_url: str, tmp_path: Any, fake: FakeElevenLabs
) -> TestClient:
    settings = make_settings(
        db_url, tmp_path, elevenlabs_base_url=fake.base_url, elevenlabs_timeout=0.5
    )
    return await aiohttp_client(create_app(settings))


async def make_inbox(client: TestClient, **voice: Any) -> dict[str, Any]:
    async def op(conn: Any) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Voice")
        return await accounts_store.create_inbox(
            conn, account_id=account["id"], name="Voice site", **voice
        )

    return await client.app[SERVICES].db.write(op)


async def signed_url(client: TestClient, inbox: dict[str, Any]) -> tuple[int, Any, str]:
    resp = await client.get(f"{PATH}?website_token={inbox['website_token']}")
    text = await resp.text()
    assert resp.content_type == "application/json", text
    return resp.status, await resp.json(), text


async def test_signed_url(voice_client: TestClient, fake: FakeElevenLabs, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    inbox = await make_inbox(voice_client, elevenlabs_agent_id=AGENT_ID, elevenlabs_api_key=API_KEY)
    status, body, text = await signed_url(voice_client, inbox)
    assert status == 200, body
    # The fork's display fields beside the URL: no agent in this account (the inbox's name),
    # the account's name, no avatar, no visitor (no conversation_id).
    assert body == {
        "signed_url": fake.signed_url_for(AGENT_ID),
        "account_id": inbox["account_id"],
        "agent_name": "Voice site",
        "brand_name": "Voice",
        "avatar_url": None,
    }
    [req] = fake.requests
    assert req["query"]["agent_id"] == AGENT_ID
    assert req["headers"]["xi-api-key"] == API_KEY
    assert API_KEY not in text
    assert API_KEY not in caplog.text


async def test_422_without_agent_id(voice_client: TestClient, fake: FakeElevenLabs) -> None:
    inbox = await make_inbox(voice_client, elevenlabs_api_key=API_KEY)
    status, body, text = await signed_url(voice_client, inbox)
    assert status == 422
    assert body == {"error": "No agent_id configured on this inbox"}
    assert API_KEY not in text
    assert fake.requests == []


async def test_422_without_api_key(voice_client: TestClient, fake: FakeElevenLabs) -> None:
    inbox = await make_inbox(voice_client, elevenlabs_agent_id=AGENT_ID)
    status, body, _ = await signed_url(voice_client, inbox)
    assert status == 422
    assert body == {"error": "No API key configured on this inbox"}
    assert fake.requests == []


async def test_unknown_website_token(voice_client: TestClient) -> None:
    resp = await voice_client.get(f"{PATH}?website_token=nope")
    assert resp.status == 404
    assert await resp.json() == {"error": "Resource could not be found"}


@pytest.mark.parametrize("error_status", [500, 401, 429])
async def test_502_when_elevenlabs_fails(
    voice_client: TestClient, fake: FakeElevenLabs, caplog: Any, error_status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.mode = "error"
    fake.error_status = error_status
    inbox = await make_inbox(voice_client, elevenlabs_agent_id=AGENT_ID, elevenlabs_api_key=API_KEY)
    status, body, text = await signed_url(voice_client, inbox)
    assert status == 502
    assert body == {"error": f"ElevenLabs API responded {error_status}"}
    assert len(fake.requests) == 1  # no retry storm
    assert API_KEY not in text
    assert API_KEY not in caplog.text


async def test_wrong_key_is_a_502(voice_client: TestClient, fake: FakeElevenLabs) -> None:
    inbox = await make_inbox(
        voice_client, elevenlabs_agent_id=AGENT_ID, elevenlabs_api_key="sk_wrong_key_123"
    )
    status, body, text = await signed_url(voice_client, inbox)
    assert status == 502
    assert body == {"error": "ElevenLabs API responded 401"}
    assert "sk_wrong_key_123" not in text


async def test_502_when_elevenlabs_hangs(
    voice_client: TestClient, fake: FakeElevenLabs, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.mode = "hang"
    inbox = await make_inbox(voice_client, elevenlabs_agent_id=AGENT_ID, elevenlabs_api_key=API_KEY)
    started = time.monotonic()
    status, body, text = await signed_url(voice_client, inbox)
    elapsed = time.monotonic() - started
    assert status == 502
    assert body == {"error": "ElevenLabs API timed out"}
    assert elapsed < 5, elapsed  # a bound on the timeout, not a performance figure
    assert len(fake.requests) == 1
    assert API_KEY not in text
    assert API_KEY not in caplog.text


async def test_502_when_elevenlabs_trickles(
    voice_client: TestClient, fake: FakeElevenLabs, caplog: Any
) -> None:
    """ELEVENLABS_TIMEOUT bounds the whole exchange, not each read: an upstream that sends
    its answer a byte every 0.1 s (each read well inside the 0.5 s setting, the answer
    ~10 s long) held the visitor's request until the last byte, then answered 200."""
    caplog.set_level(logging.DEBUG)
    fake.mode = "trickle"
    inbox = await make_inbox(voice_client, elevenlabs_agent_id=AGENT_ID, elevenlabs_api_key=API_KEY)
    started = time.monotonic()
    status, body, text = await signed_url(voice_client, inbox)
    elapsed = time.monotonic() - started
    assert status == 502, body
    assert body == {"error": "ElevenLabs API timed out"}
    total = len(orjson.dumps({"signed_url": fake.signed_url_for(AGENT_ID)}))
    assert 0 < fake.trickle_bytes_sent < total  # cut off mid-answer, not after it
    assert elapsed < 5, elapsed  # a bound on the timeout, not a performance figure
    assert "longer than ELEVENLABS_TIMEOUT" in caplog.text
    assert API_KEY not in text


async def test_502_when_elevenlabs_is_unreachable(
    aiohttp_client: Any, db_url: str, tmp_path: Any
) -> None:
    async with FakeElevenLabs(api_key=API_KEY, agent_id=AGENT_ID) as gone:
        base_url = gone.base_url  # a port that is closed once the fake stops
    settings = make_settings(db_url, tmp_path, elevenlabs_base_url=base_url, elevenlabs_timeout=0.5)
    client = await aiohttp_client(create_app(settings))
    inbox = await make_inbox(client, elevenlabs_agent_id=AGENT_ID, elevenlabs_api_key=API_KEY)
    status, body, text = await signed_url(client, inbox)
    assert status == 502
    assert "error" in body
    assert API_KEY not in text


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_elevenlabs_timeout_must_be_a_positive_number(value: str, tmp_path: Any) -> None:
    env = {"SECRET_KEY_BASE": "x" * 64, "DATA_DIR": str(tmp_path), "ELEVENLABS_TIMEOUT": value}
    with pytest.raises(SystemExit, match="ELEVENLABS_TIMEOUT"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "ELEVENLABS_TIMEOUT": "2.5"}).elevenlabs_timeout == 2.5
