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


MAX_TOKEN = 4096
MAX_SOURCE_ID = 255
MAX_INT64 = 2**63 - 1


def decode_contact_token(secret: str, token: str | None) -> dict[str, Any] | None:
    """The token's claims, or None for anything missing, forged, expired or malformed.

    A token signed with our secret is still checked claim by claim: we only ever mint
    integer `iat`/`exp`, a uuid `source_id` and an inbox id, and callers use them as such
    (`exp` compared with the clock, `source_id` sent to the database, where a NUL or a lone
    surrogate makes the driver raise). Anything else is no token: a 404, not a 500.
    A JWT is ASCII: header bytes that are not UTF-8 arrive as lone surrogates, on which
    PyJWT raises UnicodeEncodeError rather than one of its own errors."""
    if not token or len(token) > MAX_TOKEN or not token.isascii():
        return None
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"])  # checks exp, iat if present
    except jwt.PyJWTError:
        return None
    if not all(_int64(claims.get(key)) for key in ("exp", "iat", "inbox_id")):  # and present
        return None
    source_id = claims.get("source_id")
    if not isinstance(source_id, str) or not 0 < len(source_id) <= MAX_SOURCE_ID:
        return None
    if not source_id.isprintable():  # NUL, control characters, lone surrogates
        return None
    return claims


def _int64(value: Any) -> bool:
    """A positive integer that fits a BIGINT (not a bool, a float or a numeric string)."""
    return type(value) is int and 0 < value <= MAX_INT64


def identifier_hash(hmac_token: str, identifier: str) -> str:
    """What the site's backend computes to vouch for a user: HMAC-SHA256 hex."""
    return hmac.new(hmac_token.encode(), identifier.encode(), hashlib.sha256).hexdigest()


def identifier_hash_matches(hmac_token: str, identifier: str, given: str) -> bool:
    # Compare bytes: compare_digest refuses str with non-ASCII characters (a TypeError,
    # which would turn a forged hash into a 500 instead of a 401).
    expected = identifier_hash(hmac_token, identifier).encode()
    return hmac.compare_digest(expected, given.lower().encode())
