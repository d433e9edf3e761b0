"""Tokens: random ids, contact JWTs (Chatwoot's Widget::TokenService) and HMAC identity."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import jwt

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def new_token(length: int = 24) -> str:
    """A Rails `has_secure_token`-style token: `length` random base58 characters."""
    return "".join(secrets.choice(_BASE58) for _ in range(length))


def mint_contact_token(secret: str, *, source_id: str, inbox_id: int, expiry_days: int) -> str:
    now = int(time.time())
    payload = {
        "source_id": source_id,
        "inbox_id": inbox_id,
        "iat": now,
        "exp": now + expiry_days * 86400,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def decode_contact_token(secret: str, token: str | None) -> dict[str, Any] | None:
    """The token's claims, or None for anything missing, forged, expired or malformed."""
    if not token or len(token) > 4096:
        return None
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp", "iat"]}
        )
    except jwt.PyJWTError:
        return None
    source_id = claims.get("source_id")
    inbox_id = claims.get("inbox_id")
    if not isinstance(source_id, str) or not source_id:
        return None
    if not isinstance(inbox_id, int) or isinstance(inbox_id, bool):
        return None
    return claims


def identifier_hash(hmac_token: str, identifier: str) -> str:
    """What the site's backend computes to vouch for a user: HMAC-SHA256 hex."""
    return hmac.new(hmac_token.encode(), identifier.encode(), hashlib.sha256).hexdigest()


def identifier_hash_matches(hmac_token: str, identifier: str, given: str) -> bool:
    # Compare bytes: compare_digest refuses str with non-ASCII characters (a TypeError,
    # which would turn a forged hash into a 500 instead of a 401).
    expected = identifier_hash(hmac_token, identifier).encode()
    return hmac.compare_digest(expected, given.lower().encode())
