"""Widget events (POST /widget/events): what the widget reports about a visitor, kept for
agents to read. Bounded per visitor: each write keeps the newest `keep` of its
contact_inbox and deletes the rest, so the table grows with the visitors, never with one
visitor's requests."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import all_rows
from server.store.inputs import WidgetEvent
from server.store.tables import widget_events

# Events kept per visitor (contact_inbox); each write deletes what is older.
KEPT_PER_VISITOR = 100

_oldest_kept = (
    select(widget_events.c.id)
    .where(widget_events.c.contact_inbox_id == bindparam("ci_id"))
    .order_by(widget_events.c.id.desc())
    .limit(1)
    .offset(bindparam("keep"))
    .scalar_subquery()
)
_TRIM = delete(widget_events).where(
    widget_events.c.contact_inbox_id == bindparam("ci_id"),
    widget_events.c.id <= _oldest_kept,
)


async def record(conn: AsyncConnection, e: WidgetEvent) -> None:
    v = e.visitor
    ci_id = v.contact_inbox["id"]
    await conn.execute(
        insert(widget_events).values(
            account_id=v.inbox["account_id"],
            inbox_id=v.inbox["id"],
            contact_id=v.contact["id"],
            contact_inbox_id=ci_id,
            name=e.name,
            event_info=dict(e.info),
            created_at=time.time(),
        )
    )
    await conn.execute(_TRIM, {"ci_id": ci_id, "keep": e.keep})


async def of_contact(
    conn: AsyncConnection, account_id: int, inbox_ids: tuple[int, ...], contact_id: int, limit: int
) -> list[dict[str, Any]]:
    """The contact's events in the inboxes the caller sees, newest first."""
    return all_rows(
        await conn.execute(
            select(widget_events)
            .where(
                widget_events.c.account_id == account_id,
                widget_events.c.contact_id == contact_id,
                widget_events.c.inbox_id.in_(inbox_ids),
            )
            .order_by(widget_events.c.id.desc())
            .limit(limit)
        )
    )
