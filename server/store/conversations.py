"""Conversations, read: the visitor's current one, one an agent names, an agent's list.
Writes are in conversation_writes.py (and, for messages, message_writes.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import all_rows, one
from server.store.prepared import Prepared
from server.store.rules import latest_conversation_id
from server.store.tables import conversations

STATUSES = ("open", "resolved", "pending", "snoozed")

_CURRENT = select(conversations).where(
    conversations.c.id == latest_conversation_id(bindparam("ci_id"))
)
_CURRENT_FOR = Prepared(_CURRENT)
# FOR UPDATE: the row lock, held to commit. SQLite has no row locks and needs none: a write
# runs in a batch that holds the database's only write lock (SQLAlchemy leaves the clause out).
_CURRENT_LOCKED = Prepared(_CURRENT.with_for_update())
_LOCKED = Prepared(
    select(conversations).where(conversations.c.id == bindparam("conv_id")).with_for_update()
)


async def current_for(
    conn: AsyncConnection, contact_inbox_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    """The visitor's current conversation (rules.latest_conversation_id); with `lock`, read
    under its row lock (a write that decides from what it reads)."""
    query = _CURRENT_LOCKED if lock else _CURRENT_FOR
    return await query.one(conn, {"ci_id": contact_inbox_id})


async def locked(conn: AsyncConnection, conv_id: int) -> dict[str, Any]:
    """The conversation, read under its row lock (held to commit)."""
    row = await _LOCKED.one(conn, {"conv_id": conv_id})
    assert row is not None, f"conversation {conv_id} vanished"
    return row


async def by_display_id(
    conn: AsyncConnection, account_id: int, display_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    query = select(conversations).where(
        conversations.c.account_id == account_id, conversations.c.display_id == display_id
    )
    return one(await conn.execute(query.with_for_update() if lock else query))


async def visible_to_agent(
    conn: AsyncConnection,
    account_id: int,
    inbox_ids: list[int] | tuple[int, ...],
    display_id: int,
    *,
    lock: bool = False,
) -> dict[str, Any] | None:
    """The conversation an agent names, if it is in the agent's account and one of the inboxes
    the agent sees (server/agent/auth.py); with `lock`, under its row lock."""
    conv = await by_display_id(conn, account_id, display_id, lock=lock)
    if conv is None or conv["inbox_id"] not in inbox_ids:
        return None
    return conv


ASSIGNEE_TYPES = ("me", "unassigned", "assigned", "all")


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Which of an agent's conversations a list shows: `status` (None: any), `assignee_type`
    (me, unassigned, assigned, all: Chatwoot's ConversationFinder) for the agent `user_id`,
    and `search`, a further clause (conversation_search.matching, a contact's)."""

    user_id: int
    status: str | None = None
    assignee_type: str = "all"
    search: Any = None


def _filter(
    account_id: int,
    inbox_ids: list[int],
    status: str | None,
    *,
    assignee_type: str = "all",
    user_id: int | None = None,
    search: Any = None,
) -> Any:
    where = [conversations.c.account_id == account_id, conversations.c.inbox_id.in_(inbox_ids)]
    if status is not None:
        where.append(conversations.c.status == status)
    if assignee_type == "me":
        where.append(conversations.c.assignee_id == user_id)
    elif assignee_type == "unassigned":
        where.append(conversations.c.assignee_id.is_(None))
    elif assignee_type == "assigned":
        where.append(conversations.c.assignee_id.is_not(None))
    if search is not None:
        where.append(search)
    return and_(*where)


async def list_for_inboxes(
    conn: AsyncConnection,
    account_id: int,
    inbox_ids: list[int],
    f: ListFilter,
    *,
    page: int,
    per_page: int,
) -> list[dict[str, Any]]:
    """Conversations of the given inboxes under `f`, latest activity first."""
    where = _filter(
        account_id,
        inbox_ids,
        f.status,
        assignee_type=f.assignee_type,
        user_id=f.user_id,
        search=f.search,
    )
    return all_rows(
        await conn.execute(
            select(conversations)
            .where(where)
            .order_by(conversations.c.last_activity_at.desc(), conversations.c.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )


async def assignment_counts(
    conn: AsyncConnection,
    account_id: int,
    inbox_ids: list[int],
    *,
    status: str | None,
    user_id: int,
    search: Any = None,
) -> dict[str, int]:
    """The agent list's meta: mine / unassigned / all under the same filter (the status, a
    search; not the assignee filter: the counts are what each filter would show), in one
    query."""
    row = (
        await conn.execute(
            select(
                func.count(),
                func.sum(case((conversations.c.assignee_id == user_id, 1), else_=0)),
                func.sum(case((conversations.c.assignee_id.is_(None), 1), else_=0)),
            )
            .select_from(conversations)
            .where(_filter(account_id, inbox_ids, status, search=search))
        )
    ).one()
    return {
        "mine_count": int(row[1] or 0),
        "unassigned_count": int(row[2] or 0),
        "all_count": int(row[0] or 0),
    }
