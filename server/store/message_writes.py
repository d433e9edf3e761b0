"""Messages, written: what every engine's message write shares (the row, the reopen, the
message.created event), and the writes that find their conversation before the message
(an agent's message, a transcript turn, a conversation opened with its first message).

The statements of the message write itself are each engine's (engine/*.py: `write_message`,
and the visitor's message whole)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import attachments as attachments_store
from server.store import contacts as contacts_store
from server.store import conversation_writes, payloads
from server.store import conversations as conversations_store
from server.store import messages as messages_store
from server.store import voice_calls as calls_store
from server.store.inputs import (
    AgentMessage,
    NewConversation,
    NewMessage,
    OpenedConversation,
    Row,
    SentMessage,
    TranscriptTurn,
    WrittenTurn,
)
from server.store.rules import Flood, unread_increment
from server.store.tables import messages

if TYPE_CHECKING:
    from server.store.engine import Engine

# Every column of a message but its id: what a write binds (as v_<name>).
COLUMNS = tuple(c.name for c in messages.c if c.name != "id")


@dataclass(slots=True)
class Writing:
    """A message being written into a conversation the caller found: what an engine's
    `write_message` needs besides the conversation's id. (Built for every message: not
    frozen, which costs about 1 µs more to build; never changed.)"""

    new: NewMessage
    contact: Row  # the conversation's contact (its payloads, the visitor's channel)
    contact_inbox: Row
    flood: Flood
    now: float
    author: Row | None = None  # the agent who writes it
    sender: dict[str, Any] | None = field(init=False)  # its payloads' (payloads.sender)
    unread: int = field(init=False)  # what it adds to the conversation's unread_count
    # Its attachment rows, once the engine has their ids (the event shows them).
    attachment_rows: list[dict[str, Any]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        users = {self.author["id"]: self.author} if self.author is not None else {}
        self.sender = payloads.sender_by(
            self.new.sender_type, self.new.sender_id, self.contact, users
        )
        self.unread = unread_increment(self.new.message_type)


def message_row(conv: Row, new: NewMessage, now: float, message_id: int | None = None) -> dict:
    """The new message's columns (all but its id when `message_id` is None): the row as a
    read would return it (JSON and floats read back equal), so nothing is read back."""
    row: dict[str, Any] = {
        "account_id": conv["account_id"],
        "inbox_id": conv["inbox_id"],
        "conversation_id": conv["id"],
        "message_type": new.message_type,
        "content_type": new.content_type,
        "content": new.content,
        "private": new.private,
        "status": "sent",
        "sender_type": new.sender_type,
        "sender_id": new.sender_id,
        "source_id": None,
        "echo_id": new.echo_id,
        "external_event_id": new.external_event_id,
        "content_attributes": dict(new.content_attributes),
        "additional_attributes": {},
        "created_at": now if new.created_at is None else new.created_at,
        "updated_at": now,
    }
    return row if message_id is None else {"id": message_id, **row}


def bind(row: Row) -> dict[str, Any]:
    """A message row as the v_* parameters of an insert."""
    return {f"v_{name}": value for name, value in row.items()}


def created_event(msg: Row, conv: Row, w: Writing) -> tuple[dict[str, Any], list[str]]:
    """(data, channels) of the message's message.created."""
    ci = w.contact_inbox
    files = None
    if w.new.attachments:
        files = attachments_store.pushes(w.attachment_rows, w.new.attachments)
    data = events.message_for_sockets(msg, conv, ci["source_id"], w.sender, files)
    return data, events.message_channels(conv, ci["pubsub_token"], msg)


def reopens(new: NewMessage, conv: Row) -> bool:
    """An incoming message reopens a resolved or snoozed conversation (contract §2.4)."""
    return new.message_type == events.INCOMING and conv["status"] in ("resolved", "snoozed")


async def reopen(conn: AsyncConnection, conv: Row, w: Writing) -> Row:
    """`conv` (bumped, so under its row lock) reopened, for a message that `reopens` it."""
    changed = await conversation_writes.set_status(
        conn, conv, "open", contact=w.contact, contact_inbox=w.contact_inbox
    )
    return changed or conv


# -- the writes that find their conversation first ----------------------------------------------


async def agent_message(
    conn: AsyncConnection, engine: Engine, m: AgentMessage
) -> SentMessage | None:
    """None when the agent sees no such conversation."""
    c = m.conversation
    conv = await conversations_store.visible_to_agent(conn, c.account_id, c.inbox_ids, c.display_id)
    if conv is None:
        return None
    contact, contact_inbox = await contacts_store.identity_of(conn, conv["contact_inbox_id"])
    new = NewMessage(
        message_type=m.message_type,
        content=m.content,
        sender_type="User",
        sender_id=m.author["id"],
        content_type=m.content_type,
        content_attributes=m.content_attributes,
        private=m.private,
        echo_id=m.echo_id,
        attachments=m.attachments,
    )
    w = Writing(new, contact, contact_inbox, Flood(m.flood_limit), time.time(), m.author)
    msg, conv = await engine.write_message(conn, conv["id"], w)
    return SentMessage(msg, conv["display_id"], w.sender, tuple(w.attachment_rows))


async def transcript_turn(conn: AsyncConnection, engine: Engine, t: TranscriptTurn) -> WrittenTurn:
    """A turn goes to the visitor's live call's conversation (tagged with the call), else to
    the call that ended in the last TURN_GRACE (its last turn's POST came late), else to
    their current one as the spec page says. The conversation is read under its row lock
    before looking for the turn: two tries of one turn at once would otherwise both miss it
    (and the second insert would hit the unique index: a 500, not the first message)."""
    v = t.visitor
    now = time.time()
    # The visitor's latest call: their live call if they have one (a call starts only when
    # none is live), else the one that ended last.
    call = await calls_store.latest_of_visitor(conn, v.contact_inbox["id"])
    late = False
    if call is not None and call["ended_at"] is not None:
        late = call["ended_at"] >= now - calls_store.TURN_GRACE
        call = call if late else None
    if call is not None:
        conv = await conversations_store.locked(conn, call["conversation_id"])
    else:
        conv, _ = await conversation_writes.current_or_open(
            conn,
            v,
            additional={"initiated_from": "voice_agent"},
            reuse_resolved=False,
            may_open=t.may_open,
            lock=True,
        )
    user_turn = t.source == "user"
    message_type = events.INCOMING if user_turn else events.OUTGOING
    if t.event_id is not None:
        existing = await messages_store.by_external_event(conn, conv["id"], t.event_id)
        if existing is not None:
            return WrittenTurn(existing["id"], conv["display_id"], duplicate=True)
    elif late and call is not None:
        written = await calls_store.reconciled_turn(conn, call, t.source, t.content)
        if written is not None:
            return WrittenTurn(written["id"], conv["display_id"], duplicate=True)
    if t.event_id is None and t.duplicate_window > 0:
        last = await messages_store.last_of_type(conn, conv["id"], message_type)
        if _repeats(last, t, call, now):
            return WrittenTurn(last["id"], conv["display_id"], duplicate=True)  # type: ignore[index]
    attrs: dict[str, Any] = {"voice_transcript": True, "role": t.source}
    if call is not None:
        attrs["voice_call_id"] = call["id"]
    new = NewMessage(
        message_type=message_type,
        content=t.content,
        sender_type="Contact" if user_turn else None,
        sender_id=v.contact["id"] if user_turn else None,
        content_attributes=attrs,
        external_event_id=t.event_id,
    )
    w = Writing(new, v.contact, v.contact_inbox, Flood(t.flood_limit), now)
    msg, conv = await engine.write_message(conn, conv["id"], w)
    return WrittenTurn(msg["id"], conv["display_id"], duplicate=False)


def _repeats(last: Row | None, t: TranscriptTurn, call: Row | None, now: float) -> bool:
    """`last` (the conversation's newest message of the turn's type) is this same turn: a
    voice turn of the same role and call, with the same words, within the window."""
    if last is None or last["created_at"] < now - t.duplicate_window:
        return False
    attrs = last["content_attributes"]
    return (
        attrs.get("voice_transcript") is True
        and attrs.get("role") == t.source
        and attrs.get("voice_call_id") == (call["id"] if call is not None else None)
        and last["content"] == t.content
    )


async def open_with_message(
    conn: AsyncConnection, engine: Engine, n: NewConversation
) -> OpenedConversation:
    v = n.visitor
    contact = v.contact
    if n.contact_changes:
        contact = await contacts_store.update_contact(conn, contact["id"], dict(n.contact_changes))
    conv = await conversation_writes.open_new(
        conn,
        v.inbox,
        contact,
        v.contact_inbox,
        additional=n.additional_attributes,
        custom=n.custom_attributes,
    )
    new = NewMessage(
        message_type=events.INCOMING,
        content=n.content,
        sender_type="Contact",
        sender_id=contact["id"],
        content_attributes={"in_reply_to": None},
        echo_id=n.echo_id,
    )
    w = Writing(new, contact, v.contact_inbox, Flood(n.flood_limit), time.time())
    msg, bumped = await engine.write_message(conn, conv["id"], w)
    # The row as the bump left it (rules.bump: updated_at is the message's time too), and
    # what the visitor sees of a new conversation: its one message.
    conv = {**conv, **bumped, "updated_at": w.now}
    return OpenedConversation(conv, [(msg, w.sender)], contact)
