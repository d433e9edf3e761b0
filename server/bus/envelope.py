"""What travels on the bus: a small JSON header, a newline, then the ActionCable `message`
member already serialized. The hub never re-encodes the message; it splices the bytes into
each subscriber's frame.

Header keys: `o` outbox id (durable events), `c` conversation id, `s` a pubsub token whose
sockets must not get this event (the typer's own).
"""

from __future__ import annotations

from typing import Any

import orjson


def pack(
    message: bytes,
    *,
    outbox_id: int | None = None,
    conversation_id: int | None = None,
    skip_token: str | None = None,
) -> bytes:
    header: dict[str, Any] = {}
    if outbox_id is not None:
        header["o"] = outbox_id
    if conversation_id is not None:
        header["c"] = conversation_id
    if skip_token is not None:
        header["s"] = skip_token
    return orjson.dumps(header) + b"\n" + message


def unpack(payload: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, message = payload.partition(b"\n")
    return orjson.loads(head), message


def outbox_key(payload: bytes) -> tuple[int, int] | None:
    """(conversation id or 0, outbox id) of a durable event's envelope; None for another."""
    header = orjson.loads(payload.partition(b"\n")[0])
    outbox_id = header.get("o")
    if outbox_id is None:
        return None
    return header.get("c") or 0, outbox_id
