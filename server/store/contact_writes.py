"""Contacts, written where the write emits an event (the widget removing custom attributes,
an agent editing a contact): contact.updated goes to the account's stream (contract §4:
contact.* reach agents through the account alone)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.errors import unprocessable
from server.store import contacts as contacts_store
from server.store import one, outbox
from server.store.inputs import ContactAttributeRemoval, ContactEdit
from server.store.tables import accounts, contact_inboxes, contacts


async def remove_attributes(conn: AsyncConnection, r: ContactAttributeRemoval) -> dict[str, Any]:
    """The contact without `r.keys` in its custom attributes. The map is read under the row
    lock (FOR UPDATE; SQLite's write transaction is the lock there), so a concurrent change
    of another key is not lost; contact.updated only when a key was there."""
    contact_id = r.visitor.contact["id"]
    row = one(
        await conn.execute(select(contacts).where(contacts.c.id == contact_id).with_for_update())
    )
    assert row is not None, f"contact {contact_id} vanished"
    removed = set(r.keys)
    attrs = row["custom_attributes"]
    if not removed.intersection(attrs):
        return row
    kept = {key: value for key, value in attrs.items() if key not in removed}
    changed = await contacts_store.update_contact(conn, contact_id, {"custom_attributes": kept})
    await _emit_updated(conn, changed)
    return changed


async def _emit_updated(conn: AsyncConnection, changed: dict[str, Any]) -> None:
    """contact.updated to the contact's account, in the write's transaction."""
    await outbox.add(
        conn,
        events.CONTACT_UPDATED,
        {**events.contact_push(changed), "account_id": changed["account_id"]},
        [events.account_channel(changed["account_id"])],
        conversation_id=None,
    )


async def visible_contact(
    conn: AsyncConnection, account_id: int, inbox_ids: tuple[int, ...], contact_id: int
) -> dict[str, Any] | None:
    """The contact, when it is of the agent's account and has been seen in one of the inboxes
    the agent sees (a contact_inbox there); None otherwise, as for one that does not exist."""
    seen = select(contact_inboxes.c.id).where(
        contact_inboxes.c.contact_id == contacts.c.id,
        contact_inboxes.c.inbox_id.in_(inbox_ids),
    )
    return one(
        await conn.execute(
            select(contacts).where(
                contacts.c.id == contact_id,
                contacts.c.account_id == account_id,
                seen.exists(),
            )
        )
    )


EMAIL_TAKEN = "email has already been taken"


async def edit(conn: AsyncConnection, e: ContactEdit) -> dict[str, Any] | None:
    """The contact with the agent's changes (None: the agent sees no such contact), and
    contact.updated to the account when something changed. An email another contact of the
    account has is a 422, as Chatwoot's uniqueness validation."""
    row = await visible_contact(conn, e.account_id, e.inbox_ids, e.contact_id)
    if row is None:
        return None
    changes = {k: v for k, v in e.changes.items() if row[k] != v}
    if not changes:
        return row
    email = changes.get("email")
    if email is not None:
        # Two edits giving two contacts one email at once: the account's row lock makes the
        # second wait and see the first (there is no unique index: visitors' own emails
        # may repeat, as in Chatwoot before a merge).
        await conn.execute(
            select(accounts.c.id).where(accounts.c.id == e.account_id).with_for_update()
        )
        taken = await conn.execute(
            select(contacts.c.id).where(
                contacts.c.account_id == e.account_id,
                contacts.c.email == email,
                contacts.c.id != e.contact_id,
            )
        )
        if taken.first() is not None:
            raise unprocessable(EMAIL_TAKEN)
    changed = await contacts_store.update_contact(conn, e.contact_id, changes)
    await _emit_updated(conn, changed)
    return changed
