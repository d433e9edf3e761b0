"""Labels, written: an account's new label, and the labels of a conversation (with its
conversation.updated, as Chatwoot emits when label_list changes)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.errors import unprocessable
from server.labels import MAX_PER_ACCOUNT, MAX_PER_CONVERSATION
from server.store import conversation_writes, one
from server.store import labels as labels_store
from server.store.inputs import LabelChange, NewLabel
from server.store.tables import accounts, labels

TAKEN = "Title has already been taken"


async def create_label(conn: AsyncConnection, n: NewLabel) -> dict[str, Any]:
    """The new label; 422 when the title is taken or the account has MAX_PER_ACCOUNT. The
    account's row lock makes the count exact; the unique (account_id, title) is the last word
    on a taken title (writes.Store.create_label turns its error into the same 422)."""
    await conn.execute(select(accounts.c.id).where(accounts.c.id == n.account_id).with_for_update())
    if await labels_store.by_title(conn, n.account_id, n.title) is not None:
        raise unprocessable(TAKEN)
    if await labels_store.count(conn, n.account_id) >= MAX_PER_ACCOUNT:
        raise unprocessable(f"an account has at most {MAX_PER_ACCOUNT} labels")
    now = time.time()
    row = one(
        await conn.execute(
            insert(labels)
            .values(
                account_id=n.account_id,
                title=n.title,
                description=n.description,
                color=n.color,
                show_on_sidebar=n.show_on_sidebar,
                created_at=now,
                updated_at=now,
            )
            .returning(*labels.c)
        )
    )
    assert row is not None
    return row


async def _wanted(conn: AsyncConnection, conv: dict[str, Any], c: LabelChange) -> list[str]:
    have = list(conv["labels"] or [])
    if c.replace is not None:
        return list(c.replace)
    if c.remove is not None:
        return [t for t in have if t != c.remove]
    assert c.add is not None
    if c.add in have or await labels_store.by_title(conn, conv["account_id"], c.add) is None:
        return have  # Chatwoot adds only a label the account has; an unknown one is ignored
    if len(have) >= MAX_PER_CONVERSATION:
        raise unprocessable(f"a conversation has at most {MAX_PER_CONVERSATION} labels")
    return [*have, c.add]


async def change_labels(conn: AsyncConnection, c: LabelChange) -> dict[str, Any] | None:
    """The conversation with its labels as changed (with conversation.updated when they did
    change); None when there is no such conversation. Decided under the row lock."""
    conv, known = await conversation_writes.find(conn, c.conversation, lock=True)
    if conv is None:
        return None
    wanted = await _wanted(conn, conv, c)
    if wanted == list(conv["labels"] or []):
        return conv
    changed = await conversation_writes.change(conn, conv["id"], labels=wanted)
    await conversation_writes.emit(conn, changed, [events.CONVERSATION_UPDATED], **known)
    return changed
