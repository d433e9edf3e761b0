"""The rules of server/auth.py and server/widget/context.py, each held by a test that fails
when the rule is flipped or deleted (a mutation run found these unheld): over real HTTP on
both databases where a visitor can see the rule, directly where only a clock can.

- a contact token is refused once expired, also while it sits in the verified-token cache,
  and from the very second its `exp` names;
- the cache is keyed by secret and token, and bounded;
- a suspended account's inbox answers 401 on every widget endpoint;
- the `website_token` may come in a JSON body (POST and PATCH), the query winning;
- the length limits at their edges: website_token 128, contact token 4,096, source_id 255;
- tokens are HS256 with `iat` and `exp`; an identifier hash compares case-insensitively."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from server.auth import decode_contact_token, identifier_hash, identifier_hash_matches
from server.services import SERVICES
from server.store import accounts as accounts_store
from server.store.tables import accounts, inboxes
from server.widget import context
from tests.conftest import SECRET, Visitor, World
from tests.test_bad_input import PUBLIC_ENDPOINTS, VALID, VISITOR_ENDPOINTS

NOT_FOUND = {"error": "Resource could not be found"}
W = "/api/v1/widget"


def claims_of(visitor: Visitor) -> dict[str, Any]:
    return jwt.decode(visitor.auth_token or "", SECRET, algorithms=["HS256"])


def sign(claims: dict[str, Any], algorithm: str = "HS256") -> str:
    return jwt.encode(claims, SECRET, algorithm=algorithm)


async def messages_status(visitor: Visitor, token: str) -> int:
    resp = await visitor.client.get(visitor._url("messages"), headers={"X-Auth-Token": token})
    return resp.status


# -- expiry -------------------------------------------------------------------------------


async def test_a_cached_token_is_refused_once_expired(client: TestClient, world: World) -> None:
    """Valid when first used, so its claims are cached; refused once its exp has passed,
    though the cache would still hand the claims out."""
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    exp = int(time.time()) + 2
    token = sign({**claims_of(visitor), "iat": exp - 60, "exp": exp})
    assert await messages_status(visitor, token) == 200
    assert await messages_status(visitor, token) == 200  # now from the cache
    deadline = time.monotonic() + 10
    while time.time() <= exp + 0.01:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await messages_status(visitor, token) == 404
    assert await messages_status(visitor, visitor.auth_token or "") == 200


def test_a_token_is_expired_at_its_exp_second() -> None:
    """`exp` is the first second the token is no good (RFC 7519 4.1.4: "on or after"), as
    PyJWT has it: `<=`, not `<`. Checked with the cache's clock, no race with the real one."""
    iat = int(time.time())
    token = sign({"source_id": "edge", "inbox_id": 1, "iat": iat, "exp": iat + 3600})
    exp = iat + 3600
    assert context.contact_claims(SECRET, token, now=lambda: exp - 0.001) is not None
    assert context.contact_claims(SECRET, token, now=lambda: exp) is None
    assert (SECRET, token) not in context._claims_cache  # dropped, not kept to be re-checked
    assert context.contact_claims(SECRET, token, now=lambda: exp - 0.001) is not None


def test_the_cache_is_keyed_by_secret() -> None:
    """A token verified under one secret (another app in the process, a rotated secret) is
    not valid under another because its claims are cached."""
    iat = int(time.time())
    token = sign({"source_id": "keyed", "inbox_id": 1, "iat": iat, "exp": iat + 3600})
    assert context.contact_claims(SECRET, token) is not None
    assert context.contact_claims("another-secret-" + "y" * 40, token) is None
    assert context.contact_claims(SECRET, None) is None
    assert context.contact_claims(SECRET, "") is None


def test_the_cache_is_bounded() -> None:
    """Every distinct valid token is an entry: at the bound the cache starts over, so a
    visitor minting tokens (or a long-lived process) cannot grow it without end."""
    iat = int(time.time())
    limit = context._CLAIMS_MAX
    context._claims_cache.clear()
    context._claims_cache.update({("filler", str(i)): {} for i in range(limit)})  # full
    token = sign({"source_id": "one-more", "inbox_id": 1, "iat": iat, "exp": iat + 3600})
    assert context.contact_claims(SECRET, token) is not None
    assert list(context._claims_cache) == [(SECRET, token)]
    context._claims_cache.clear()


# -- suspended accounts -------------------------------------------------------------------


async def set_account_status(client: TestClient, account_id: int, status: str) -> None:
    async def op(conn: Any) -> None:
        await conn.execute(
            update(accounts).where(accounts.c.id == account_id).values(status=status)
        )

    await client.app[SERVICES].db.write(op)


async def call(visitor: Visitor, method: str, path: str) -> Any:
    body = VALID.get(path, {"custom_attributes": {"a": 1}, "typing_status": "on"})
    return await visitor.request(method, path, json=None if method == "GET" else body)


async def test_a_suspended_account_is_401_on_every_widget_endpoint(
    client: TestClient, world: World
) -> None:
    """Suspending takes effect while the inbox is cached too, within the cache's lifetime
    (InboxCache.ttl, 5 s by default); from then on every widget endpoint, with a valid
    visitor token or none needed, answers Chatwoot's 401."""
    client.app[SERVICES].inboxes.ttl = ttl = 1.0  # the default is 5 s; the rule is the same
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    await visitor.send("before")
    await set_account_status(client, world.account["id"], "suspended")
    deadline = time.monotonic() + ttl + 5
    while (resp := await visitor.get("messages")).status == 200:
        assert time.monotonic() < deadline, "suspension never took effect"
        await asyncio.sleep(0.1)
    for method, path in VISITOR_ENDPOINTS + PUBLIC_ENDPOINTS:
        resp = await call(visitor, method, path)
        assert resp.status == 401, (method, path, await resp.text())
        assert await resp.json() == {"error": "Account is suspended"}, (method, path)
    resp = await client.get(f"/widget?website_token={world.inbox['website_token']}")
    assert resp.status == 401
    # The other account's widget, and this one once reactivated, work.
    await set_account_status(client, world.account["id"], "active")
    deadline = time.monotonic() + ttl + 5
    while (resp := await visitor.get("messages")).status == 401:
        assert time.monotonic() < deadline, "reactivation never took effect"
        await asyncio.sleep(0.1)
    assert resp.status == 200


async def test_an_inbox_of_a_suspended_account_is_401_from_the_first_request(
    client: TestClient, world: World
) -> None:
    async def op(conn: Any) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Gone")
        return await accounts_store.create_inbox(conn, account_id=account["id"], name="Gone")

    inbox = await client.app[SERVICES].db.write(op)
    await set_account_status(client, inbox["account_id"], "closed")  # any status but active
    resp = await client.post(f"{W}/config?website_token={inbox['website_token']}")
    assert resp.status == 401
    assert await resp.json() == {"error": "Account is suspended"}


# -- where the website_token comes from ----------------------------------------------------


async def test_website_token_in_a_json_body(client: TestClient, world: World) -> None:
    """Chatwoot's widget sends `website_token` in the body of its POSTs and PATCHes: it
    works there, with no query string at all."""
    token = world.inbox["website_token"]
    resp = await client.post(f"{W}/config", json={"website_token": token})
    assert resp.status == 200, await resp.text()
    auth = (await resp.json())["website_channel_config"]["auth_token"]
    headers = {"X-Auth-Token": auth}
    resp = await client.post(
        f"{W}/messages",
        json={"website_token": token, "message": {"content": "from the body"}},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["content"] == "from the body"
    resp = await client.patch(
        f"{W}/contact", json={"website_token": token, "name": "Body"}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    # Without it anywhere: the usual 404.
    resp = await client.post(f"{W}/messages", json={"message": {"content": "x"}}, headers=headers)
    assert resp.status == 404
    assert await resp.json() == NOT_FOUND


async def test_the_query_token_wins_over_the_body(client: TestClient, world: World) -> None:
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    other = world.other_inbox["website_token"]
    resp = await visitor.post("messages", {"website_token": other, "message": {"content": "q"}})
    assert resp.status == 200, await resp.text()  # the query's inbox, the visitor's own
    resp = await client.post(
        f"{W}/messages?website_token={other}",
        json={"website_token": world.inbox["website_token"], "message": {"content": "q"}},
        headers={"X-Auth-Token": visitor.auth_token or ""},
    )
    assert resp.status == 404  # the query's inbox is not the visitor's


# -- length limits at their edges -----------------------------------------------------------


async def set_website_token(client: TestClient, inbox_id: int, token: str) -> None:
    async def op(conn: Any) -> None:
        await conn.execute(
            update(inboxes).where(inboxes.c.id == inbox_id).values(website_token=token)
        )

    await client.app[SERVICES].db.write(op)


async def test_website_token_of_128_is_looked_up_129_is_not(
    client: TestClient, world: World
) -> None:
    """Tokens are 24 characters; the lookup takes up to 128 and refuses longer ones unread
    (no database round trip for junk). An inbox with a 128-character token works, one
    with 129 cannot be reached."""
    for inbox, length, status in ((world.inbox, 128, 200), (world.other_inbox, 129, 404)):
        token = "T" * (length - 3) + f"{length:03d}"
        await set_website_token(client, inbox["id"], token)
        resp = await client.post(f"{W}/config?website_token={token}")
        assert resp.status == status, (length, await resp.text())
        resp = await client.get(f"{W}/inbox_members?website_token={token}")
        assert resp.status == status, length


def token_of_length(claims: dict[str, Any], length: int) -> str:
    """A valid token of exactly `length` characters: the claims plus padding."""
    for key in ("p", "pq", "pqr"):
        for n in range(length):
            token = sign({**claims, key: "x" * n})
            if len(token) == length:
                return token
            if len(token) > length:
                break
    raise AssertionError(f"no token of length {length}")


async def test_contact_token_of_4096_is_read_4097_is_not(client: TestClient, world: World) -> None:
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    claims = claims_of(visitor)
    at_limit = token_of_length(claims, 4096)
    over = token_of_length(claims, 4097)
    assert decode_contact_token(SECRET, at_limit) is not None
    assert decode_contact_token(SECRET, over) is None
    assert await messages_status(visitor, at_limit) == 200
    assert await messages_status(visitor, over) == 404


def test_source_id_of_255_is_read_256_is_not() -> None:
    base = {"inbox_id": 1, "iat": int(time.time()), "exp": int(time.time()) + 60}
    assert decode_contact_token(SECRET, sign({**base, "source_id": "s" * 255})) is not None
    assert decode_contact_token(SECRET, sign({**base, "source_id": "s" * 256})) is None
    assert decode_contact_token(SECRET, sign({**base, "source_id": "s"})) is not None


# -- token format -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_only_hs256_tokens_with_iat_and_exp(client: TestClient, world: World) -> None:
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    claims = claims_of(visitor)
    assert await messages_status(visitor, sign(claims)) == 200
    refused = {
        "HS512": sign(claims, "HS512"),
        "HS384": sign(claims, "HS384"),
        "no iat": sign({k: v for k, v in claims.items() if k != "iat"}),
        "no exp": sign({k: v for k, v in claims.items() if k != "exp"}),
        "iat in the future": sign({**claims, "iat": int(time.time()) + 3600}),
    }
    for name, token in refused.items():
        assert await messages_status(visitor, token) == 404, name


def test_identifier_hash_compares_case_insensitively() -> None:
    """Sites compute the HMAC in whatever hex case their language prints."""
    digest = identifier_hash("hmac-secret", "user-1")
    assert digest == digest.lower() and len(digest) == 64
    assert identifier_hash_matches("hmac-secret", "user-1", digest)
    assert identifier_hash_matches("hmac-secret", "user-1", digest.upper())
    assert not identifier_hash_matches("hmac-secret", "user-2", digest)
    assert not identifier_hash_matches("other-secret", "user-1", digest)
    assert not identifier_hash_matches("hmac-secret", "user-1", digest[:-1])
    assert not identifier_hash_matches("hmac-secret", "user-1", "é" * 64)
