"""/api/v1/widget/conversations and its member actions (contract §2.1, §2.2, §2.6)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events, typing
from server.attributes import merged_attributes
from server.errors import forbidden, json_response, not_found, unprocessable
from server.params import json_body, key_list, obj, opt_str
from server.services import services
from server.store import contacts as contacts_store
from server.store import conversations as conversations_store
from server.store import messages as messages_store
from server.widget import context
from server.widget.messages import conversation_attributes, message_input


def empty_ok() -> web.Response:
    return web.Response(status=200)


async def index(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    conv = await svc.db.read(conversations_store.current_for, visitor.contact_inbox["id"])
    return json_response(events.widget_conversation(conv) if conv else {})


def _contact_changes(contact: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Chatwoot's ContactIdentifyAction, retaining the original name: the email is
    lower-cased; a name is set only when the contact has none yet."""
    changes: dict[str, Any] = {}
    email = opt_str(given, "email", max_len=320, label="contact.email")
    if email:
        email = email.strip().lower()
        if "@" not in email or email.startswith("@") or email.endswith("@"):
            raise unprocessable("contact.email is not a valid email address")
        changes["email"] = email
    phone = opt_str(given, "phone_number", max_len=32, label="contact.phone_number")
    if phone:
        changes["phone_number"] = phone.strip()
    name = opt_str(given, "name", max_len=255, label="contact.name")
    if not contact["name"]:
        if name and name.strip():
            changes["name"] = name.strip()
        elif email:
            changes["name"] = email.split("@", 1)[0]
    return changes


async def create(request: web.Request) -> web.Response:
    """Always a new conversation, with the visitor's first message (within the contact's
    budget of new conversations: a 429 past it). A retry (the message's `echo_id` already
    used by this visitor) answers the conversation the first try made, and writes nothing."""
    svc = services(request)
    visitor = await context.visitor(request)
    body = await json_body(request)
    contact_changes = _contact_changes(visitor.contact, obj(body, "contact"))
    message = obj(body, "message")
    content, echo_id = message_input(svc, message)
    limit = svc.settings.max_attributes_bytes
    custom = merged_attributes(body, "custom_attributes", {}, limit) or {}
    additional = conversation_attributes(request, message)
    await svc.limiter.check("conversations_per_contact", str(visitor.contact["id"]))

    async def op(conn: AsyncConnection) -> dict[str, Any]:
        contact = visitor.contact
        if contact_changes:
            contact = await contacts_store.update_contact(conn, contact["id"], contact_changes)
        conv = await conversations_store.create(
            conn,
            inbox=visitor.inbox,
            contact=contact,
            contact_inbox=visitor.contact_inbox,
            additional_attributes=additional,
            custom_attributes=custom,
        )
        await messages_store.create(
            conn,
            conv,
            contact=contact,
            contact_inbox=visitor.contact_inbox,
            message_type=events.INCOMING,
            content=content,
            sender_type="Contact",
            sender_id=contact["id"],
            sender=events.contact_push(contact),
            content_attributes={"in_reply_to": None},
            echo_id=echo_id,
        )
        conv = await conversations_store.lock(conn, conv["id"])
        return await _created(conn, conv, contact)

    async def original(conn: AsyncConnection) -> dict[str, Any] | None:
        """A retry (the message's echo_id is taken): the conversation its first try made."""
        assert echo_id is not None
        found = await messages_store.by_echo_id(conn, "Contact", visitor.contact["id"], echo_id)
        if found is None:
            return None
        conv = await conversations_store.by_display_id(conn, visitor.inbox["account_id"], found[1])
        return None if conv is None else await _created(conn, conv, visitor.contact)

    try:
        return json_response(await svc.db.write(op))
    except Exception as exc:
        if not messages_store.is_retry(exc, echo_id):
            raise
        first = await svc.db.read(original)
        if first is None:
            raise
        return json_response(first)


async def _created(
    conn: AsyncConnection, conv: dict[str, Any], contact: dict[str, Any]
) -> dict[str, Any]:
    """What POST /conversations answers: the conversation with its messages."""
    rows = await messages_store.page(conn, conv["id"], before=None, after=None, visitor=True)
    sender = events.contact_push(contact)
    return {
        **events.widget_conversation(conv),
        "messages": [events.widget_message(m, conv["display_id"], sender) for m in rows],
        "custom_attributes": conv["custom_attributes"],
        "contact": events.contact_record(contact),
    }


async def _current(request: web.Request, visitor: context.Visitor) -> dict[str, Any]:
    conv = await services(request).db.read(
        conversations_store.current_for, visitor.contact_inbox["id"]
    )
    if conv is None:
        raise not_found()
    return conv


async def set_custom_attributes(request: web.Request) -> web.Response:
    """Replaces the custom attributes of the visitor's open conversation."""
    svc = services(request)
    visitor = await context.visitor(request)
    body = await json_body(request)
    # Replaced, not merged (as Chatwoot does): the new map alone is what the cap measures.
    attrs = merged_attributes(body, "custom_attributes", {}, svc.settings.max_attributes_bytes)
    if attrs is None:
        raise unprocessable("param is missing or the value is empty: custom_attributes")
    conv = await _current(request, visitor)
    if conv["status"] == "resolved":
        raise not_found()
    await svc.db.write(conversations_store.set_custom_attributes, conv, attrs, **visitor.context)
    return web.Response(status=204)


async def destroy_custom_attributes(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    body = await json_body(request)
    keys = key_list(body, "custom_attribute") or key_list(body, "custom_attributes")
    conv = await _current(request, visitor)
    conv = await svc.db.write(
        conversations_store.remove_custom_attributes, conv, keys, **visitor.context
    )
    return json_response(events.conversation_record(conv))


async def toggle_typing(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    on = typing.status(await json_body(request))
    await svc.limiter.check("typing_per_sender", f"contact:{visitor.contact['id']}")
    conv = await _current(request, visitor)
    conv_push = await svc.db.read(conversations_store.push_data, conv, **visitor.context)
    typer = events.contact_push(visitor.contact)
    typing.publish(
        svc.bus, conv, conv_push, typer, on=on, typer_token=visitor.contact_inbox["pubsub_token"]
    )
    return empty_ok()


async def update_last_seen(request: web.Request) -> web.Response:
    """The visitor saw the conversation: stamp contact_last_seen_at (the server's clock, as
    Chatwoot does), mark agent messages read, tell the agents."""
    svc = services(request)
    visitor = await context.visitor(request)
    await json_body(request)  # a malformed body is still a 400
    conv = await svc.db.read(conversations_store.current_for, visitor.contact_inbox["id"])
    if conv is None:
        return empty_ok()

    async def op(conn: AsyncConnection) -> None:
        locked = await conversations_store.lock(conn, conv["id"], contact_last_seen_at=time.time())
        await messages_store.mark_read(conn, locked, **visitor.context)
        await conversations_store.emit(conn, locked, [events.CONVERSATION_READ], **visitor.context)

    await svc.db.write(op)
    return empty_ok()


async def toggle_status(request: web.Request) -> web.Response:
    """The visitor ends the chat: resolves, where the inbox allows it."""
    svc = services(request)
    visitor = await context.visitor(request)
    if not visitor.inbox["end_conversation"]:
        raise forbidden("This inbox does not allow visitors to end conversations")
    conv = await _current(request, visitor)
    await svc.db.write(conversations_store.set_status, conv, "resolved", **visitor.context)
    return empty_ok()
