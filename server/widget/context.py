"""Who is calling a widget endpoint: the inbox (website_token, query or body) and the
visitor (X-Auth-Token JWT), as in Chatwoot's website_token_helper (contract §1.4)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from server.auth import decode_contact_token
from server.errors import not_found, unauthorized
from server.params import json_body
from server.services import services
from server.store import contacts as contacts_store
from server.store.inputs import Visitor

# Paths whose multipart bodies carry files (read by their handler, not here).
TAKES_FILES = frozenset({"/api/v1/widget/messages"})


def plausible_token(token: str | None) -> bool:
    """Worth a database lookup: short printable ASCII. A NUL or a lone surrogate would make
    PostgreSQL (or the driver) raise, a 500 instead of the 404 an unknown token gets."""
    if not token or len(token) > 128:
        return False
    return token.isascii() and token.isprintable()


async def website_token(request: web.Request) -> str | None:
    body: dict[str, Any] = {}
    # Read the body first, on every endpoint, even those that ignore it: a malformed or
    # oversized body is a 400/413 everywhere (multipart a 415), before anything is written.
    # The one endpoint that takes files streams its multipart body itself
    # (server/uploads.py); its website_token comes in the query, as the widget sends it.
    streamed = request.path in TAKES_FILES and request.content_type.startswith("multipart/")
    writes = request.method in ("POST", "PATCH", "PUT", "DELETE")
    if writes and request.can_read_body and not streamed:
        body = await json_body(request)
    token = request.query.get("website_token")
    if token:
        return token
    value = body.get("website_token")
    return value if isinstance(value, str) else None


async def inbox(request: web.Request) -> dict[str, Any]:
    token = await website_token(request)
    if not plausible_token(token):
        raise not_found()
    found = await services(request).inboxes.get(token)
    if found is None:
        raise not_found()
    if found["account_status"] != "active":
        raise unauthorized("Account is suspended")
    return found


_CLAIMS_MAX = 50_000
_claims_cache: dict[tuple[str, str], dict[str, Any]] = {}


def contact_claims(
    secret: str, token: str | None, now: Callable[[], float] = time.time
) -> dict[str, Any] | None:
    """`decode_contact_token`, remembered per (secret, token): a visitor sends the same JWT
    with every request and verifying it (PyJWT: HMAC, key checks, JSON) is a large share of
    a small request's CPU. Only valid tokens are kept, and `exp` is checked on every use: a
    token is expired from the second its `exp` names (`now` is for tests of that edge)."""
    if not token:
        return None
    key = (secret, token)
    claims = _claims_cache.get(key)
    if claims is None:
        claims = decode_contact_token(secret, token)
        if claims is None:
            return None
        if len(_claims_cache) >= _CLAIMS_MAX:
            _claims_cache.clear()
        _claims_cache[key] = claims
    if claims["exp"] <= now():
        _claims_cache.pop(key, None)
        return None
    return claims


async def claim(request: web.Request) -> tuple[dict[str, Any], str]:
    """The inbox and the visitor's source_id from a valid JWT for that inbox, or 404; checks
    no database row, so a write can look the visitor up in its own transaction."""
    box = await inbox(request)
    svc = services(request)
    claims = contact_claims(svc.settings.secret_key_base, request.headers.get("X-Auth-Token"))
    if claims is None or claims["inbox_id"] != box["id"]:
        raise not_found()
    return box, claims["source_id"]


async def visitor(request: web.Request) -> Visitor:
    """The inbox and the visitor, or 404 for anything unknown, forged or expired."""
    box, source_id = await claim(request)
    found = await services(request).db.read(contacts_store.find_identity, box["id"], source_id)
    if found is None:
        raise not_found()
    contact, ci = found
    return Visitor(inbox=box, contact=contact, contact_inbox=ci)
