"""RoomChannel: who may subscribe with a pubsub_token, which bus channels that gives, and
presence. Stricter than Chatwoot on purpose: an unknown or mismatched token is rejected
rather than left hanging."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.hub.connection import Connection
from server.hub.hub import Subscription
from server.store import accounts as accounts_store
from server.store import contacts as contacts_store
from server.store.outbox import encode_message

log = logging.getLogger(__name__)


class Rejected(Exception):
    pass


def _parse_identifier(identifier: str) -> dict[str, Any]:
    try:
        ident = orjson.loads(identifier)
    except orjson.JSONDecodeError:
        raise Rejected("identifier is not JSON") from None
    if not isinstance(ident, dict) or ident.get("channel") != "RoomChannel":
        raise Rejected("unknown channel")
    token = ident.get("pubsub_token")
    if not isinstance(token, str) or not token or len(token) > 128 or "\x00" in token:
        raise Rejected("pubsub_token missing")  # NUL: PostgreSQL text cannot even compare it
    return ident


MAX_ID = 2**63 - 1


def _as_id(value: Any) -> int | None:
    """A positive id that fits a BIGINT column; anything else is no id (a rejection, where
    an out-of-range value would make the database driver raise)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 < value <= MAX_ID:
        return value
    return None


async def resolve(conn: AsyncConnection, socket: Connection, identifier: str) -> Subscription:
    """The subscription an identifier asks for on `socket`, or Rejected (`conn`: the
    database's)."""
    ident = _parse_identifier(identifier)
    token = ident["pubsub_token"]
    if ident.get("user_id") is None:
        found = await contacts_store.identity_by_pubsub_token(conn, token)
        if found is None:
            raise Rejected("unknown contact token")
        contact, _ = found
        return Subscription(
            conn=socket,
            identifier=identifier,
            token=token,
            channels=[events.contact_channel(token)],
            account_id=contact["account_id"],
            contact_id=contact["id"],
        )
    user_id = _as_id(ident.get("user_id"))
    account_id = _as_id(ident.get("account_id"))
    if user_id is None or account_id is None:
        raise Rejected("user_id and account_id must be integers")
    user = await accounts_store.user_by_pubsub_token(conn, token, user_id)
    if user is None:
        raise Rejected("unknown user token")
    role = next(
        (
            m["role"]
            for m in await accounts_store.memberships(conn, user_id)
            if m["account_id"] == account_id
        ),
        None,
    )
    if role is None:
        raise Rejected("not a member of that account")
    inbox_ids = await accounts_store.visible_inbox_ids(conn, user_id, account_id, role)
    channels = [events.user_channel(user_id), events.account_channel(account_id)]
    channels += [events.inbox_channel(i) for i in inbox_ids]
    return Subscription(
        conn=socket,
        identifier=identifier,
        token=token,
        channels=channels,
        account_id=account_id,
        user_id=user_id,
    )


async def presence_message(
    conn: AsyncConnection,
    sub: Subscription,
    online_users: set[int],
    online_contacts: set[int],
) -> bytes:
    """presence.update for this subscriber (contract §4.7): every account user's status,
    'offline' unless they have a live socket; agents also get the online contacts."""
    chosen = await accounts_store.availability_of_agents(conn, sub.account_id)
    data: dict[str, Any] = {
        "account_id": sub.account_id,
        "users": {
            str(user_id): (availability if user_id in online_users else "offline")
            for user_id, availability in chosen.items()
        },
    }
    if sub.is_agent:
        data["contacts"] = {str(c): "online" for c in sorted(online_contacts)}
    return encode_message(events.PRESENCE_UPDATE, data)
