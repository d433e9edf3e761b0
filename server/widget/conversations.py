"""/api/v1/widget/conversations and its member actions (contract §2.1, §2.2, §2.6)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server import events, typing, views
from server.attributes import merged_attributes
from server.errors import forbidden, json_response, not_found, unprocessable
from server.params import json_body, key_list, obj, opt_str
from server.services import services
from server.store import conversations as conversations_store
from server.store import payloads
from server.store.inputs import AttributeChange, MarkRead, NewConversation, Row, StatusChange
from server.widget import context
from server.widget.messages import conversation_attributes, message_input


def empty_ok() -> web.Response:
    return web.Response(status=200)


async def index(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    conv = await svc.db.read(conversations_store.current_for, visitor.contact_inbox["id"])
    return json_response(views.conversation_for_visitor(conv) if conv else {})


def _contact_changes(contact: Row, given: dict[str, Any]) -> dict[str, Any]:
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
    opened = await svc.store.open_conversation(
        NewConversation(
            visitor=visitor,
            contact_changes=contact_changes,
            custom_attributes=custom,
            additional_attributes=additional,
            content=content,
            echo_id=echo_id,
            flood_limit=svc.settings.messages_per_minute,
        )
    )
    conv = opened.conversation
    return json_response(
        {
            **views.conversation_for_visitor(conv),
            "messages": [
                views.message_for_visitor(m, conv["display_id"], sender)
                for m, sender in opened.messages
            ],
            "custom_attributes": conv["custom_attributes"],
            "contact": views.contact_record(opened.contact),
        }
    )


async def set_custom_attributes(request: web.Request) -> web.Response:
    """Replaces the custom attributes of the visitor's open conversation."""
    svc = services(request)
    visitor = await context.visitor(request)
    body = await json_body(request)
    # Replaced, not merged (as Chatwoot does): the new map alone is what the cap measures.
    attrs = merged_attributes(body, "custom_attributes", {}, svc.settings.max_attributes_bytes)
    if attrs is None:
        raise unprocessable("param is missing or the value is empty: custom_attributes")
    if await svc.store.change_attributes(AttributeChange(visitor, replace=attrs)) is None:
        raise not_found()
    return web.Response(status=204)


async def destroy_custom_attributes(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    body = await json_body(request)
    keys = key_list(body, "custom_attribute") or key_list(body, "custom_attributes")
    conv = await svc.store.change_attributes(AttributeChange(visitor, remove=tuple(keys)))
    if conv is None:
        raise not_found()
    return json_response(views.conversation_record(conv))


async def toggle_typing(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    on = typing.status(await json_body(request))
    await svc.limiter.check("typing_per_sender", f"contact:{visitor.contact['id']}")
    found = await svc.db.read(payloads.current_conversation, visitor)
    if found is None:
        raise not_found()
    conv, conv_push = found
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
    await svc.store.mark_read(MarkRead(visitor))  # no conversation yet: nothing to mark
    return empty_ok()


async def toggle_status(request: web.Request) -> web.Response:
    """The visitor ends the chat: resolves, where the inbox allows it."""
    svc = services(request)
    visitor = await context.visitor(request)
    if not visitor.inbox["end_conversation"]:
        raise forbidden("This inbox does not allow visitors to end conversations")
    if await svc.store.change_status(StatusChange(visitor, "resolved")) is None:
        raise not_found()
    return empty_ok()
