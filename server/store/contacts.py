"""Contacts (website visitors) and their contact_inboxes (the visitor's identity in one inbox:
`source_id` in the JWT, `pubsub_token` for the socket)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.auth import new_token
from server.store import one
from server.store.prepared import Prepared
from server.store.rules import latest_conversation_id, prefixed, take_prefixed
from server.store.tables import contact_inboxes, contacts

# The columns of a contact_inbox, prefixed, next to the contact's own columns in one row.
CI_PREFIX = "ci_"
CI_COLUMNS = prefixed(contact_inboxes, CI_PREFIX)


def split_identity(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(contact, contact_inbox) of a row with the contact's columns and CI_COLUMNS."""
    ci = take_prefixed(row, contact_inboxes, CI_PREFIX)
    return row, ci


_FIND_IDENTITY = Prepared(
    select(contacts, *CI_COLUMNS)
    .join(contact_inboxes, contact_inboxes.c.contact_id == contacts.c.id)
    .where(
        contact_inboxes.c.inbox_id == bindparam("inbox_id"),
        contact_inboxes.c.source_id == bindparam("source_id"),
    )
)


async def find_identity(
    conn: AsyncConnection, inbox_id: int, source_id: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    row = await _FIND_IDENTITY.one(conn, {"inbox_id": inbox_id, "source_id": source_id})
    return split_identity(row) if row else None


_FIND_SENDER = Prepared(
    select(
        contacts,
        *CI_COLUMNS,
        latest_conversation_id(contact_inboxes.c.id).label("current_conversation_id"),
    )
    .join(contact_inboxes, contact_inboxes.c.contact_id == contacts.c.id)
    .where(
        contact_inboxes.c.inbox_id == bindparam("inbox_id"),
        contact_inboxes.c.source_id == bindparam("source_id"),
    )
)


async def find_sender(
    conn: AsyncConnection, inbox_id: int, source_id: str
) -> tuple[dict[str, Any], dict[str, Any], int | None] | None:
    """`find_identity` plus the id of the visitor's current conversation (None when they
    have none yet): what a visitor's message needs, in one statement."""
    row = await _FIND_SENDER.one(conn, {"inbox_id": inbox_id, "source_id": source_id})
    if row is None:
        return None
    current = row.pop("current_conversation_id")
    contact, ci = split_identity(row)
    return contact, ci, current


async def identity_by_pubsub_token(
    conn: AsyncConnection, token: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    row = one(
        await conn.execute(
            select(contacts, *CI_COLUMNS)
            .join(contact_inboxes, contact_inboxes.c.contact_id == contacts.c.id)
            .where(contact_inboxes.c.pubsub_token == token)
        )
    )
    return split_identity(row) if row else None


async def get_contact(conn: AsyncConnection, contact_id: int) -> dict[str, Any] | None:
    return one(await conn.execute(select(contacts).where(contacts.c.id == contact_id)))


async def get_contact_inbox(conn: AsyncConnection, ci_id: int) -> dict[str, Any] | None:
    return one(await conn.execute(select(contact_inboxes).where(contact_inboxes.c.id == ci_id)))


async def create_identity(
    conn: AsyncConnection,
    *,
    account_id: int,
    inbox_id: int,
    additional_attributes: dict[str, Any] | None = None,
    identifier: str | None = None,
    identifier_verified: bool = False,
    hmac_verified: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new visitor: a contact and its contact_inbox with a fresh uuid source_id."""
    now = time.time()
    contact = one(
        await conn.execute(
            insert(contacts)
            .values(
                account_id=account_id,
                name="",
                email=None,
                phone_number=None,
                identifier=identifier,
                identifier_verified=identifier_verified,
                avatar_url="",
                blocked=False,
                additional_attributes=additional_attributes or {},
                custom_attributes={},
                created_at=now,
                updated_at=now,
            )
            .returning(*contacts.c)
        )
    )
    assert contact is not None
    ci = await attach(
        conn, contact_id=contact["id"], inbox_id=inbox_id, hmac_verified=hmac_verified
    )
    return contact, ci


async def attach(
    conn: AsyncConnection, *, contact_id: int, inbox_id: int, hmac_verified: bool = False
) -> dict[str, Any]:
    now = time.time()
    ci = one(
        await conn.execute(
            insert(contact_inboxes)
            .values(
                contact_id=contact_id,
                inbox_id=inbox_id,
                source_id=str(uuid.uuid4()),
                pubsub_token=new_token(24),
                hmac_verified=hmac_verified,
                created_at=now,
                updated_at=now,
            )
            .returning(*contact_inboxes.c)
        )
    )
    assert ci is not None
    return ci


async def update_contact(
    conn: AsyncConnection, contact_id: int, values: dict[str, Any]
) -> dict[str, Any]:
    values = {**values, "updated_at": time.time()}
    row = one(
        await conn.execute(
            update(contacts)
            .where(contacts.c.id == contact_id)
            .values(**values)
            .returning(*contacts.c)
        )
    )
    assert row is not None
    return row


async def verified_owner(
    conn: AsyncConnection, account_id: int, identifier: str
) -> dict[str, Any] | None:
    """The account's contact whose `identifier` was proven by an HMAC (at most one: a unique
    index). Contacts that merely claimed it are never returned."""
    return one(
        await conn.execute(
            select(contacts).where(
                contacts.c.account_id == account_id,
                contacts.c.identifier == identifier,
                contacts.c.identifier_verified.is_(True),
            )
        )
    )


async def verified_contact_inbox(
    conn: AsyncConnection, contact_id: int, inbox_id: int
) -> dict[str, Any] | None:
    """The newest HMAC-verified contact_inbox of a contact in an inbox: the one every browser
    that proves the contact's identifier shares."""
    return one(
        await conn.execute(
            select(contact_inboxes)
            .where(
                contact_inboxes.c.contact_id == contact_id,
                contact_inboxes.c.inbox_id == inbox_id,
                contact_inboxes.c.hmac_verified.is_(True),
            )
            .order_by(contact_inboxes.c.id.desc())
            .limit(1)
        )
    )


async def set_hmac_verified(conn: AsyncConnection, ci_id: int) -> None:
    await conn.execute(
        update(contact_inboxes)
        .where(contact_inboxes.c.id == ci_id)
        .values(hmac_verified=True, updated_at=time.time())
    )


async def lock_contact_inbox(conn: AsyncConnection, ci_id: int) -> None:
    """Take the contact_inbox's row lock (an UPDATE: updated_at): serializes the opening of
    a visitor's conversations (conversation_writes.open_unless_current)."""
    await conn.execute(
        update(contact_inboxes).where(contact_inboxes.c.id == ci_id).values(updated_at=time.time())
    )


_IDENTITY_OF = Prepared(
    select(contacts, *CI_COLUMNS)
    .join(contact_inboxes, contact_inboxes.c.contact_id == contacts.c.id)
    .where(contact_inboxes.c.id == bindparam("ci_id"))
)


async def identity_of(
    conn: AsyncConnection, contact_inbox_id: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(contact, contact_inbox) of a conversation's contact_inbox, in one statement."""
    row = await _IDENTITY_OF.one(conn, {"ci_id": contact_inbox_id})
    assert row is not None, f"contact_inbox {contact_inbox_id} vanished"
    return split_identity(row)
