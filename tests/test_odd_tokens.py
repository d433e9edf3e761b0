"""Contact JWTs signed with the real secret (so they pass the signature) whose claims are of
the wrong type, out of range, or carry text the database cannot hold, on both databases.

Each was a 500 on some widget endpoint (`exp` as a string broke the cached expiry check; a
NUL or a lone surrogate in `source_id` broke the lookup on PostgreSQL, a surrogate on SQLite
too). Each must be the 404 an unknown visitor gets, change nothing (the battery from
test_bad_input snapshots every table), and on POST /config and GET /widget simply get the
visitor a new identity."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import orjson
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.auth import decode_contact_token
from server.ratelimit.rules import RateLimits
from tests.conftest import SECRET, Visitor, World, make_settings
from tests.test_bad_input import NOT_FOUND, VALID, VISITOR_ENDPOINTS, Case, check, prepared

W = "/api/v1/widget"


@pytest.fixture
async def client(db_url: str, tmp_path: Any, aiohttp_client: Any) -> TestClient:
    """The usual app without the budget of new contacts per address: every odd token sent
    to /config and /widget makes a visitor, more than a real address makes in a minute."""
    settings = make_settings(db_url, tmp_path, rate_limits=RateLimits(contacts_per_address=None))
    return await aiohttp_client(create_app(settings))


def odd_claims(world: World, visitor: Visitor) -> dict[str, dict[str, Any]]:
    """Claims a token signed with our own secret could carry: each passes the signature."""
    claims = jwt.decode(visitor.auth_token or "", SECRET, algorithms=["HS256"])
    now = int(time.time())
    later = now + 3600
    return {
        "exp string": {**claims, "exp": str(later)},
        "exp string with spaces": {**claims, "exp": f" {later} "},
        "exp float": {**claims, "exp": later + 0.5},
        "exp true": {**claims, "exp": True},
        "exp huge": {**claims, "exp": 10**30},
        "exp list": {**claims, "exp": [later]},
        "iat string": {**claims, "iat": str(now)},
        "iat list": {**claims, "iat": [now]},
        "iat true": {**claims, "iat": True},
        "source_id NUL": {**claims, "source_id": "a\x00b"},
        "source_id only NUL": {**claims, "source_id": "\x00"},
        "source_id lone surrogate": {**claims, "source_id": "\ud800"},
        "source_id surrogate inside": {**claims, "source_id": claims["source_id"] + "\udfff"},
        "source_id newline": {**claims, "source_id": "a\nb"},
        "source_id long": {**claims, "source_id": "s" * 2000},
        "source_id number": {**claims, "source_id": 12},
        "inbox_id over BIGINT": {**claims, "inbox_id": 2**63},
        "inbox_id huge": {**claims, "inbox_id": 10**40},
        "inbox_id negative": {**claims, "inbox_id": -(2**70)},
        "inbox_id float": {**claims, "inbox_id": float(claims["inbox_id"])},
        "inbox_id true": {**claims, "inbox_id": True},
    }


def sign(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_signed_tokens_with_odd_claims_are_404(client: TestClient, world: World) -> None:
    """Every widget endpoint that takes the contact JWT, with each odd token: the 404 an
    unknown visitor gets."""
    visitor = await prepared(client, world)
    cases = []
    for method, path in VISITOR_ENDPOINTS:
        body = VALID.get(path, {"custom_attributes": {"a": 1}, "typing_status": "on"})
        for name, claims in odd_claims(world, visitor).items():
            cases.append(
                Case(
                    method,
                    path,
                    body=body,
                    auth=sign(claims),
                    status=404,
                    expect=NOT_FOUND,
                    note=name,
                )
            )
    await check(client, world, cases)


async def test_config_with_odd_claims_makes_a_new_visitor(client: TestClient, world: World) -> None:
    """POST /config and GET /widget take a token to reuse and, for a token that is no good,
    hand out a fresh identity: never a 500, never the old contact."""
    visitor = await prepared(client, world)
    for name, claims in odd_claims(world, visitor).items():
        token = sign(claims)
        resp = await client.post(
            f"{W}/config?website_token={world.inbox['website_token']}",
            headers={"X-Auth-Token": token},
        )
        assert resp.status == 200, (name, await resp.text())
        body = await resp.json()
        assert body["contact"]["id"] != visitor.contact_id, name
        resp = await client.get(
            "/widget",
            params={"website_token": world.inbox["website_token"], "cw_conversation": token},
        )
        assert resp.status == 200, (name, await resp.text())


def test_decode_refuses_claims_of_the_wrong_type() -> None:
    """The rule itself: a token whose claims we cannot use as they are is no token."""
    base = {"source_id": "abc", "inbox_id": 1, "iat": int(time.time())}
    base["exp"] = base["iat"] + 60
    assert decode_contact_token(SECRET, sign(base)) == base
    for name, change in {
        "exp string": {"exp": str(base["exp"])},
        "iat string": {"iat": str(base["iat"])},
        "exp true": {"exp": True},
        "source_id NUL": {"source_id": "a\x00"},
        "source_id surrogate": {"source_id": "\ud800"},
        "source_id empty": {"source_id": ""},
        "inbox_id 2**63": {"inbox_id": 2**63},
        "inbox_id 0": {"inbox_id": 0},
    }.items():
        assert decode_contact_token(SECRET, sign({**base, **change})) is None, name
    assert decode_contact_token(SECRET, sign({**base, "inbox_id": 2**63 - 1})) is not None


async def raw_request(client: TestClient, head: bytes) -> tuple[int, bytes]:
    """One request written byte for byte (an HTTP client would refuse these headers)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(10):
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return status, await reader.readexactly(length)
    finally:
        writer.close()


async def test_tokens_that_are_not_ascii_are_404(client: TestClient, world: World) -> None:
    """Header bytes that are not UTF-8 reach the handler as lone surrogates; PyJWT raised a
    UnicodeEncodeError on them (a 500), not one of its own errors. A JWT is ASCII."""
    visitor = await prepared(client, world)
    claims = jwt.decode(visitor.auth_token or "", SECRET, algorithms=["HS256"])
    site = world.inbox["website_token"]
    for token in (b"\xff\xfe", b"a.b\xff.c", visitor.auth_token.encode() + b"\xff", "é".encode()):
        for method, path in (("GET", "messages"), ("GET", "conversations"), ("GET", "contact")):
            head = (
                f"{method} {W}/{path}?website_token={site} HTTP/1.1\r\nHost: t\r\n".encode()
                + b"X-Auth-Token: "
                + token
                + b"\r\nConnection: close\r\n\r\n"
            )
            status, body = await raw_request(client, head)
            assert (status, orjson.loads(body)) == (404, NOT_FOUND), (token, path)
        head = (
            f"POST {W}/config?website_token={site} HTTP/1.1\r\nHost: t\r\n".encode()
            + b"X-Auth-Token: "
            + token
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        status, body = await raw_request(client, head)
        assert status == 200, (token, body)
        assert orjson.loads(body)["contact"]["id"] != visitor.contact_id
    for query in ("%FF%FE", "%ED%A0%80", sign(claims) + "%FF"):
        resp = await client.get(f"/widget?website_token={site}&cw_conversation={query}")
        assert resp.status == 200, (query, await resp.text())
    assert decode_contact_token(SECRET, "a.b\udcff.c") is None


async def test_agent_tokens_that_are_not_ascii_are_401(client: TestClient, world: World) -> None:
    """The same bytes in the agent API's api_access_token header were a 500 too."""
    for token in (b"\xff\xfe", world.agent["access_token"].encode() + b"\xff", "é".encode()):
        head = (
            b"GET /api/v1/profile HTTP/1.1\r\nHost: t\r\napi_access_token: "
            + token
            + b"\r\nConnection: close\r\n\r\n"
        )
        status, body = await raw_request(client, head)
        assert (status, orjson.loads(body)) == (401, {"error": "Invalid Access Token"}), token
    resp = await client.get(
        "/api/v1/profile", headers={"api_access_token": world.agent["access_token"]}
    )
    assert resp.status == 200
