"""/api/v1/widget/messages: history, catch-up and the visitor's own messages (§2.3, §2.4)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.errors import json_response, not_found, unprocessable
from server.params import json_body, obj, opt_int, opt_str
from server.services import Services, services
from server.store import contacts as contacts_store
from server.store import conversations as conversations_store
from server.store import messages as messages_store
from server.widget import context


def message_input(svc: Services, message: dict[str, Any]) -> tuple[str, str | None]:
    """(content, echo_id) of a message the visitor sends; blank content is refused."""
    content = opt_str(
        message, "content", max_len=svc.settings.max_message_length, label="message.content"
    )
    if content is None or not content.strip():
        raise unprocessable("message.content can't be blank")
    echo_id = opt_str(message, "echo_id", max_len=64, label="message.echo_id")
    return content, echo_id


def conversation_attributes(request: web.Request, message: dict[str, Any]) -> dict[str, Any]:
    """additional_attributes of a conversation the widget opens (contract §2.2)."""
    attrs: dict[str, Any] = {
        "browser_language": (request.headers.get("Accept-Language") or "")[:2] or None,
        "browser": {"user_agent": (request.headers.get("User-Agent") or "")[:512]},
    }
    timestamp = opt_str(message, "timestamp", max_len=128, label="message.timestamp")
    if timestamp:
        attrs["initiated_at"] = {"timestamp": timestamp}
    referer = opt_str(message, "referer_url", max_len=2048, label="message.referer_url")
    if referer:
        attrs["referer"] = referer
    return attrs


async def index(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    before = opt_int(request.query.get("before"), "before")
    after = opt_int(request.query.get("after"), "after")

    async def op(conn: AsyncConnection) -> dict[str, Any]:
        conv = await conversations_store.current_for(conn, visitor.contact_inbox["id"])
        if conv is None:
            return {"payload": [], "meta": {}}
        rows = await messages_store.page(conn, conv["id"], before=before, after=after, visitor=True)
        pushes = await messages_store.senders(conn, rows, visitor.contact)
        return {
            "payload": [
                events.widget_message(m, conv["display_id"], messages_store.sender_of(m, pushes))
                for m in rows
            ],
            "meta": {"contact_last_seen_at": events.epoch(conv["contact_last_seen_at"])},
        }

    return json_response(await svc.db.read(op))


async def create(request: web.Request) -> web.Response:
    """The visitor's message goes to their current conversation, even a resolved one (which
    it reopens); the first message opens a conversation. A retry (an `echo_id` the visitor
    already sent) answers the original message and writes nothing: the unique index refuses
    the second write, and only then is the original read."""
    svc = services(request)
    box, source_id = await context.claim(request)
    message = obj(await json_body(request), "message")
    content, echo_id = message_input(svc, message)
    try:
        record = await _write(request, svc, box, source_id, message, content, echo_id)
    except Exception as exc:
        if not messages_store.is_retry(exc, echo_id):
            raise
        assert echo_id is not None
        original = await svc.db.read(_original, box["id"], source_id, echo_id)
        if original is None:
            raise
        record = original
    return json_response(record)


async def _original(
    conn: AsyncConnection, inbox_id: int, source_id: str, echo_id: str
) -> dict[str, Any] | None:
    """The visitor's message with `echo_id`, as its first POST answered it."""
    sender_row = await contacts_store.find_sender(conn, inbox_id, source_id)
    if sender_row is None:
        return None
    contact = sender_row[0]
    found = await messages_store.by_echo_id(conn, "Contact", contact["id"], echo_id)
    if found is None:
        return None
    msg, display_id = found
    return _record(msg, {"display_id": display_id}, events.contact_push(contact))


async def _write(
    request: web.Request,
    svc: Services,
    box: dict[str, Any],
    source_id: str,
    message: dict[str, Any],
    content: str,
    echo_id: str | None,
) -> dict[str, Any]:
    """The visitor is looked up inside the write: this is the busiest endpoint. On
    PostgreSQL it is first tried without a transaction (two round trips instead of four),
    and otherwise in one."""
    reply_to = opt_int(message.get("reply_to"), "message.reply_to")
    additional = conversation_attributes(request, message)
    # What both paths write, besides the sender.
    the_message: dict[str, Any] = {
        "message_type": events.INCOMING,
        "content": content,
        "sender_type": "Contact",
        "content_attributes": {"in_reply_to": reply_to},
        "echo_id": echo_id,
        "flood_limit": svc.settings.messages_per_minute,
    }

    async def without_transaction(conn: AsyncConnection) -> dict[str, Any] | None:
        # PostgreSQL, the usual case: two statements, no transaction (see
        # messages_store.create_if_unchanged); None sends the message down the general path.
        found = await conversations_store.visitor_snapshot(conn, box["id"], source_id)
        if found is None:
            return None
        contact, contact_inbox, conv = found
        sender = events.contact_push(contact)
        written = await messages_store.create_if_unchanged(
            conn,
            conv,
            contact_inbox=contact_inbox,
            sender_id=contact["id"],
            sender=sender,
            now=time.time(),
            **the_message,
        )
        if written is None:
            return None
        msg, conv = written
        return _record(msg, conv, sender)

    if svc.db.is_postgresql:
        record = await svc.db.write_autocommit(without_transaction)
        if record is not None:
            return record

    async def op(conn: AsyncConnection) -> dict[str, Any]:
        # PostgreSQL: identity and lock in one statement when the visitor has a conversation.
        now = time.time()
        locked = None
        if conn.dialect.name == "postgresql":
            unread = messages_store.unread_increment(events.INCOMING)
            found = await conversations_store.lock_latest_of_sender(
                conn, box["id"], source_id, now=now, unread=unread
            )
            if found is not None:
                contact, contact_inbox, locked = found
        if locked is not None:
            conv: dict[str, Any] = locked
        else:
            sender_row = await contacts_store.find_sender(conn, box["id"], source_id)
            if sender_row is None:
                raise not_found()
            contact, contact_inbox, current_id = sender_row
            if current_id is not None:
                conv = {"id": current_id}  # messages_store.create locks it
            else:
                conv, _ = await conversations_store.current_or_new(
                    conn,
                    inbox=box,
                    contact=contact,
                    contact_inbox=contact_inbox,
                    additional_attributes=additional,
                )
        sender = events.contact_push(contact)
        msg, conv = await messages_store.create(
            conn,
            conv,
            contact=contact,
            contact_inbox=contact_inbox,
            sender_id=contact["id"],
            sender=sender,
            locked=locked,
            locked_at=now,
            **the_message,
        )
        return _record(msg, conv, sender)

    return await svc.db.write(op)


def _record(
    msg: dict[str, Any], conv: dict[str, Any], sender: dict[str, Any] | None
) -> dict[str, Any]:
    record = events.message_record(msg, conv["display_id"], sender)
    del record["content_type"], record["status"]  # this view has neither (contract §2.4)
    return record
