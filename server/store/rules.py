"""The store's rules, each defined once and used by every statement it applies to.

- The current conversation: a visitor's current conversation is always their latest one
  (contract §1.4), whatever its status: `latest_conversation_id`.
- Visible to the visitor: private notes and activity messages reach agents only:
  `visible_to_visitor` (the SQL of `events.visible_to_visitor`).
- Display order: a page of messages is shown in id order, with the voice turns added from
  ElevenLabs' transcript merged in by date: `in_display_order`.
- The bump: what a new message changes on its conversation: `bump`, `unread_increment`.
- The flood check: at most `limit` messages a minute per conversation: `Flood`.
- Row splitting: a statement that reads several tables at once labels the columns of each
  with a prefix, and the row is split back by that prefix: `prefixed`, `take_prefixed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Table, and_, bindparam, func, literal_column, select, update
from sqlalchemy.sql.elements import ColumnElement, Label
from sqlalchemy.sql.expression import Exists, ScalarSelect, Select, Update

from server import events
from server.errors import ApiError
from server.store.tables import conversations, messages

# -- the current conversation ----------------------------------------------------------------


def latest_conversation_id(contact_inbox_id: Any) -> ScalarSelect[Any]:
    """The id of the visitor's current conversation: their latest, by id (the index
    conversations_contact_inbox answers it with one entry). `contact_inbox_id` is a column
    (correlated) or a value or subquery; the conversations table is aliased, so the rule sits
    as well in a statement on conversations itself."""
    latest = conversations.alias("latest")
    return (
        select(func.max(latest.c.id))
        .where(latest.c.contact_inbox_id == contact_inbox_id)
        .scalar_subquery()
    )


# -- visible to the visitor ------------------------------------------------------------------


def visible_to_visitor() -> ColumnElement[bool]:
    """`events.visible_to_visitor` in SQL: no private note, no activity message."""
    return and_(messages.c.private.is_(False), messages.c.message_type != events.ACTIVITY)


# -- the bump ----------------------------------------------------------------------------------

# The columns of a conversation a message write reads back from its bump (no JSON attributes
# to decode): enough for the message's event and the conversation's channels.
BUMPED_COLUMNS = (
    conversations.c.id,
    conversations.c.account_id,
    conversations.c.inbox_id,
    conversations.c.display_id,
    conversations.c.status,
    conversations.c.assignee_id,
    conversations.c.unread_count,
    conversations.c.last_activity_at,
)
BUMPED_NAMES = tuple(c.name for c in BUMPED_COLUMNS)


# external_event_id of a voice turn taken from ElevenLabs' transcript:
# "elevenlabs:<conversation>:<index>" (server/store/voice_call_writes.py).
ELEVENLABS_KEY_PREFIX = "elevenlabs:"


def in_display_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page of a conversation's messages (read in id order) as it is shown: in id order
    (commit order), except the voice turns taken from ElevenLabs' transcript after the call,
    which come later by id than the turns said after them: each goes before the first
    message dated after it (they are dated between the turns around them). Chatwoot's widget
    re-sorts by created_at; this order agrees with that one. Pages are still cut by id
    (`before=`, `after=` stay id-monotonic)."""
    added = [r for r in rows if (r["external_event_id"] or "").startswith(ELEVENLABS_KEY_PREFIX)]
    if not added:
        return rows
    added.sort(key=lambda r: (r["created_at"], r["id"]))
    shown: list[dict[str, Any]] = []
    a = 0
    for row in rows:
        if (row["external_event_id"] or "").startswith(ELEVENLABS_KEY_PREFIX):
            continue
        while a < len(added) and added[a]["created_at"] < row["created_at"]:
            shown.append(added[a])
            a += 1
        shown.append(row)
    shown.extend(added[a:])
    return shown


def bump(*where: Any) -> Update:
    """UPDATE conversations, for a new message: last activity and updated_at become `now`,
    unread_count grows by `unread` (`unread_increment`). Every message bumps its conversation,
    and that change of the row is what orders a conversation's message ids and events by
    commit: a writer waits for the row lock, and PostgreSQL's unlocked write
    (engine/postgresql.py) sees that the row changed."""
    return (
        update(conversations)
        .where(*where)
        .values(
            last_activity_at=bindparam("now"),
            updated_at=bindparam("now"),
            unread_count=conversations.c.unread_count + bindparam("unread"),
        )
    )


def unread_increment(message_type: int) -> int:
    """What a new message adds to its conversation's unread_count: the visitor's count."""
    return 1 if message_type == events.INCOMING else 0


def bumped(conv: dict[str, Any], message_type: int, now: float) -> dict[str, Any]:
    """`conv` (BUMPED_COLUMNS, as read before the bump) as `bump` leaves it."""
    row = {name: conv[name] for name in BUMPED_NAMES}
    row["unread_count"] += unread_increment(message_type)
    row["last_activity_at"] = now
    return row


# -- the flood check ---------------------------------------------------------------------------

FLOOD_WINDOW = 60.0  # seconds


class FloodError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            422,
            {
                "message": f"Too many messages: at most {limit} a minute per conversation",
                "attributes": ["base"],
            },
        )


@dataclass(frozen=True, slots=True)
class Flood:
    """At most `limit` messages per FLOOD_WINDOW per conversation: a new message is refused
    while the conversation's limit-th newest message is younger than the window, which reads
    at most `limit` index entries however busy the conversation is. The check must read the
    messages after the conversation's row lock is taken (every earlier message counted): each
    engine places it so (engine/*.py)."""

    limit: int

    def params(self, conversation_id: int, now: float) -> dict[str, Any]:
        """The parameters of `nth_newest_created_at` and `flooded`."""
        return {
            "flood_conversation_id": conversation_id,
            "flood_skip": self.limit - 1,
            "flood_since": now - FLOOD_WINDOW,
        }

    def refuses(self, nth_newest_at: float | None, now: float) -> bool:
        """Whether the created_at `nth_newest_created_at` read refuses a message at `now`."""
        return nth_newest_at is not None and nth_newest_at > now - FLOOD_WINDOW

    def error(self) -> FloodError:
        return FloodError(self.limit)


def _nth_newest() -> Select[Any]:
    return (
        select(messages.c.created_at)
        .where(messages.c.conversation_id == bindparam("flood_conversation_id"))
        .order_by(messages.c.id.desc())
        .limit(1)
        .offset(bindparam("flood_skip"))
    )


def nth_newest_created_at() -> ScalarSelect[Any]:
    """created_at of the conversation's message that has `flood_skip` newer ones (NULL when
    it has fewer), for a statement's columns."""
    return _nth_newest().scalar_subquery()


def flooded() -> Exists:
    """EXISTS when the flood check refuses (Flood.params), for a statement's WHERE."""
    nth_newest = _nth_newest().subquery("nth_newest")
    return (
        select(literal_column("1"))
        .select_from(nth_newest)
        .where(nth_newest.c.created_at > bindparam("flood_since", type_=Float))
        .exists()
    )


# -- row splitting -----------------------------------------------------------------------------


def prefixed(table: Table, prefix: str) -> list[Label[Any]]:
    """The columns of `table` labelled `<prefix><name>`, beside another table's in one row."""
    return [c.label(f"{prefix}{c.name}") for c in table.c]


_KEYS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}


def take_prefixed(row: dict[str, Any], table: Table, prefix: str) -> dict[str, Any]:
    """The `prefixed` columns of `table`, taken out of `row` and named as in the table."""
    keys = _KEYS.get((table.name, prefix))
    if keys is None:  # once per table and prefix: this runs for every visitor's message
        keys = _KEYS[(table.name, prefix)] = tuple((c.name, f"{prefix}{c.name}") for c in table.c)
    return {name: row.pop(key) for name, key in keys}
