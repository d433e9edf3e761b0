"""Contacts, written by the widget where the write emits an event: contact.updated goes to
the account's stream (contract §4: contact.* reach agents through the account alone)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import contacts as contacts_store
from server.store import one, outbox
from server.store.inputs import ContactAttributeRemoval
from server.store.tables import contacts


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
    await outbox.add(
        conn,
        events.CONTACT_UPDATED,
        {**events.contact_push(changed), "account_id": changed["account_id"]},
        [events.account_channel(changed["account_id"])],
        conversation_id=None,
    )
    return changed
