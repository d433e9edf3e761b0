"""ActionCable's JSON framing (actioncable-v1-json), as bytes ready to write.

A broadcast frame is `{"identifier": <the client's identifier string>, "message": <event>}`.
The event is serialized once per event; per subscription we only splice bytes."""

from __future__ import annotations

import time
from typing import Any

import orjson

SUBPROTOCOL = "actioncable-v1-json"

WELCOME = b'{"type":"welcome"}'
SERVER_RESTART = b'{"type":"disconnect","reason":"server_restart","reconnect":true}'
INVALID_REQUEST = b'{"type":"disconnect","reason":"invalid_request","reconnect":false}'
# The stream's history could not cover what this process missed (server/hub/hub.py):
# reconnect, and catch up as after any reconnect.
RESYNC = b'{"type":"disconnect","reason":"resync","reconnect":true}'
# No subscription confirmed within CABLE_SUBSCRIBE_TIMEOUT of the welcome.
NO_SUBSCRIPTION = b'{"type":"disconnect","reason":"no_subscription","reconnect":true}'


def rate_limited(limit: str) -> bytes:
    """The last frame to a socket that spent a per-socket budget (server/ratelimit): do not
    reconnect; `limit` names the budget."""
    return orjson.dumps(
        {"type": "disconnect", "reason": "rate_limited", "reconnect": False, "limit": limit}
    )


def ping(now: float | None = None) -> bytes:
    return b'{"type":"ping","message":%d}' % int(time.time() if now is None else now)


def identifier_json(identifier: str) -> bytes:
    """The identifier as a JSON string literal, echoed verbatim on every frame."""
    return orjson.dumps(identifier)


def confirm(identifier_json: bytes) -> bytes:
    return b'{"identifier":' + identifier_json + b',"type":"confirm_subscription"}'


def reject(identifier_json: bytes) -> bytes:
    return b'{"identifier":' + identifier_json + b',"type":"reject_subscription"}'


def broadcast_prefix(identifier_json: bytes) -> bytes:
    return b'{"identifier":' + identifier_json + b',"message":'


class ProtocolError(ValueError):
    """A client frame we cannot act on."""


def parse_command(raw: str | bytes) -> tuple[str, str, dict[str, Any] | None]:
    """(command, identifier, data) of a client frame. `data` (for "message") is decoded
    from its JSON string."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolError("frame is not an object")
    command = frame.get("command")
    identifier = frame.get("identifier")
    if command not in ("subscribe", "unsubscribe", "message"):
        raise ProtocolError(f"unknown command {command!r}")
    if not isinstance(identifier, str) or not identifier or len(identifier) > 1024:
        raise ProtocolError("identifier must be a non-empty string")
    data = None
    if command == "message":
        raw_data = frame.get("data")
        if not isinstance(raw_data, str):
            raise ProtocolError("data must be a JSON string")
        try:
            data = orjson.loads(raw_data)
        except orjson.JSONDecodeError:
            raise ProtocolError("data is not JSON") from None
        if not isinstance(data, dict):
            raise ProtocolError("data must encode an object")
    return command, identifier, data
