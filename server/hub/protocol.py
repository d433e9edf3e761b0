"""ActionCable's JSON framing, as bytes ready to write: the plain protocol
(actioncable-v1-json, Chatwoot's widget) and AnyCable's extended one (actioncable-v1-ext-json,
clients that resume: a session id in the welcome, stream positions on broadcasts, `history`).

A broadcast frame is `{"identifier": <the client's identifier string>, "message": <event>}`;
on the extended protocol a durable event's frame also carries its stream position:
`{"identifier": …, "message": <event>, "stream_id": "contact:…", "epoch": "…", "offset": N}`.
The event is serialized once per event; per subscription we only splice bytes (the position
tail is built once per event and channel, and shared by every extended subscription)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from server.bus.streams import Position

SUBPROTOCOL = "actioncable-v1-json"
EXT_SUBPROTOCOL = "actioncable-v1-ext-json"

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


# -- the extended protocol ----------------------------------------------------------------

# Stream positions and history requests a client may send: bounded like every input.
MAX_HISTORY_STREAMS = 64
MAX_STREAM_ID = 256
MAX_EPOCH = 64
MAX_OFFSET = 2**63 - 1


def welcome_ext(sid: str | None, restored_ids: list[str] | None = None) -> bytes:
    """The extended welcome: the session id to come back with (none when sessions are off),
    and, after a restore, which subscriptions came back without a subscribe."""
    frame: dict[str, Any] = {"type": "welcome"}
    if sid is not None:
        frame["sid"] = sid
    if restored_ids:
        frame["restored"] = True
        frame["restored_ids"] = restored_ids
    return orjson.dumps(frame)


def position_tail(channel: str, epoch: bytes, offset: int) -> bytes:
    """What closes an extended broadcast frame: the event's stream position, then `}`."""
    return b',"stream_id":%s,"epoch":"%s","offset":%d}' % (orjson.dumps(channel), epoch, offset)


def confirm_history(identifier_json: bytes) -> bytes:
    return b'{"identifier":' + identifier_json + b',"type":"confirm_history"}'


def reject_history(identifier_json: bytes) -> bytes:
    return b'{"identifier":' + identifier_json + b',"type":"reject_history"}'


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """`{"since": <Unix seconds>, "streams": {stream_id: {"epoch", "offset"}}}`: per stream,
    the client's last position when it has one, else everything since `since` (0: none)."""

    since: float
    streams: dict[str, Position]

    @property
    def empty(self) -> bool:
        return not self.since and not self.streams


def parse_history(value: Any) -> HistoryRequest:
    if value is None:
        return HistoryRequest(0, {})
    if not isinstance(value, dict):
        raise ProtocolError("history must be an object")
    since = value.get("since") or 0
    if isinstance(since, bool) or not isinstance(since, int | float) or not 0 <= since < 1e11:
        raise ProtocolError("history.since must be a Unix time in seconds")
    raw = value.get("streams") or {}
    if not isinstance(raw, dict) or len(raw) > MAX_HISTORY_STREAMS:
        raise ProtocolError(f"history.streams must be an object of at most {MAX_HISTORY_STREAMS}")
    streams = {}
    for stream_id, pos in raw.items():
        if len(stream_id) > MAX_STREAM_ID or not isinstance(pos, dict):
            raise ProtocolError("history.streams: each stream needs {epoch, offset}")
        epoch, offset = pos.get("epoch"), pos.get("offset")
        if (
            not isinstance(epoch, str)
            or not 0 < len(epoch) <= MAX_EPOCH
            or isinstance(offset, bool)
            or not isinstance(offset, int)
            or not 0 <= offset <= MAX_OFFSET
        ):
            raise ProtocolError("history.streams: epoch must be a string, offset an integer")
        streams[stream_id] = Position(epoch, offset)
    return HistoryRequest(float(since), streams)


class ProtocolError(ValueError):
    """A client frame we cannot act on."""


COMMANDS = ("subscribe", "unsubscribe", "message")
EXT_COMMANDS = (*COMMANDS, "history", "pong")


@dataclass(frozen=True, slots=True)
class Command:
    """A client frame of the extended protocol. `history` is the request of a `history`
    command, or the one a `subscribe` may carry (None: it carries none)."""

    command: str
    identifier: str
    data: dict[str, Any] | None = None
    history: HistoryRequest | None = None


def parse_ext_command(raw: str | bytes) -> Command:
    """A frame of the extended protocol: the plain commands, `history` and `pong`."""
    frame = _frame(raw)
    command = frame.get("command")
    if command == "pong":
        return Command("pong", "")
    if command not in EXT_COMMANDS:
        raise ProtocolError(f"unknown command {command!r}")
    _, identifier, data = _check(frame, command)
    history = None
    if command == "history" or (command == "subscribe" and frame.get("history") is not None):
        history = parse_history(frame.get("history"))
    return Command(command, identifier, data, history)


def _frame(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolError("frame is not an object")
    return frame


def parse_command(raw: str | bytes) -> tuple[str, str, dict[str, Any] | None]:
    """(command, identifier, data) of a client frame. `data` (for "message") is decoded
    from its JSON string."""
    frame = _frame(raw)
    command = frame.get("command")
    if command not in COMMANDS:
        raise ProtocolError(f"unknown command {command!r}")
    return _check(frame, command)


def _check(frame: dict[str, Any], command: str) -> tuple[str, str, dict[str, Any] | None]:
    identifier = frame.get("identifier")
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
