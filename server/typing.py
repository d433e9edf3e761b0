"""Typing indicators: ephemeral, so published straight to the bus and never stored.

One rule for both sides (contract §4): the conversation's agents and its visitor hear it,
minus the typer's own sockets; a private note being typed never reaches the visitor."""

from __future__ import annotations

from typing import Any

from server import events
from server.bus import Bus
from server.bus.envelope import pack
from server.errors import bad_request
from server.store.outbox import encode_message


def status(body: dict[str, Any]) -> bool:
    """True for "on", False for "off"; anything else is a 400."""
    value = body.get("typing_status")
    if value not in ("on", "off"):
        raise bad_request('typing_status must be "on" or "off"')
    return value == "on"


def publish(
    bus: Bus,
    conv: dict[str, Any],
    conv_push: dict[str, Any],
    typer: dict[str, Any],
    *,
    on: bool,
    typer_token: str,
    is_private: bool = False,
) -> None:
    """`conv` is the conversation row, `conv_push` its push data, `typer` the contact's or
    user's push data, `typer_token` the typer's pubsub_token (their sockets skip the event)."""
    name = events.TYPING_ON if on else events.TYPING_OFF
    data = events.typing_payload(conv_push, typer, is_private=is_private)
    contact_token = conv_push["contact_inbox"]["pubsub_token"]
    if is_private or typer_token == contact_token:
        channels = events.agent_channels(conv)
    else:
        channels = events.conversation_channels(conv, contact_token)
    envelope = pack(encode_message(name, data), conversation_id=conv["id"], skip_token=typer_token)
    for channel in channels:
        bus.publish(channel, envelope)
