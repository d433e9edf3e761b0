"""/api/v1/accounts/{account_id}/conversations/{display_id}/messages (contract §6).

Agents see every message of a conversation, private notes and activity included; their
replies are outgoing messages that never reopen a resolved conversation."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.agent import auth
from server.errors import bad_request, json_response, not_found, unprocessable
from server.params import attributes, json_body, opt_int, opt_str
from server.services import Services, services
from server.store import accounts as accounts_store
from server.store import contacts as contacts_store
from server.store import messages as messages_store

# Message content types (contract §5.1) an agent may send.
CONTENT_TYPES = (
    "text",
    "input_text",
    "input_textarea",
    "input_email",
    "input_select",
    "cards",
    "form",
    "article",
    "incoming_email",
    "input_csat",
    "integrations",
    "sticker",
    "voice_call",
)
INCOMING_REFUSED = "Incoming messages are only allowed in Api inboxes"


async def index(request: web.Request) -> web.Response:
    svc = services(request)
    who = await auth.agent(request)
    display_id = auth.path_id(request, "display_id")
    before = opt_int(request.query.get("before"), "before")
    after = opt_int(request.query.get("after"), "after")

    async def op(conn: AsyncConnection) -> dict[str, Any] | None:
        conv = await auth.find_conversation(conn, who, display_id)
        if conv is None:
            return None
        contact = await contacts_store.get_contact(conn, conv["contact_id"])
        assert contact is not None
        assignee = None
        if conv["assignee_id"]:
            assignee = await accounts_store.get_user(conn, conv["assignee_id"])
        rows = await messages_store.page(
            conn, conv["id"], before=before, after=after, visitor=False
        )
        pushes = await messages_store.senders(conn, rows, contact)
        return {
            "meta": {
                "labels": [],
                "additional_attributes": conv["additional_attributes"],
                "contact": events.contact_push(contact),
                "assignee": events.user_push(assignee) if assignee else None,
                "agent_last_seen_at": events.epoch(conv["agent_last_seen_at"]),
            },
            "payload": [
                events.message_record(m, conv["display_id"], messages_store.sender_of(m, pushes))
                for m in rows
            ],
        }

    body = await svc.db.read(op)
    if body is None:
        raise not_found()
    return json_response(body)


def _message_type(value: Any) -> int:
    """ "outgoing" (the default) or "template"; "incoming" is for API inboxes, which this
    server does not have (contract §6: 422)."""
    if isinstance(value, bool):
        raise bad_request('message_type must be "outgoing" or "template"')
    if value is None or value in ("outgoing", events.OUTGOING):
        return events.OUTGOING
    if value in ("template", events.TEMPLATE):
        return events.TEMPLATE
    if value in ("incoming", events.INCOMING):
        raise unprocessable(INCOMING_REFUSED)
    raise bad_request('message_type must be "outgoing" or "template"')


def _private(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):  # form-style clients
        return value == "true"
    raise bad_request("private must be true or false")


def _content_attributes(body: dict[str, Any]) -> dict[str, Any]:
    """An object, or a JSON string holding one (Chatwoot accepts both)."""
    raw = body.get("content_attributes")
    if isinstance(raw, str):
        if len(raw) > 2 * 16 * 1024:
            raise bad_request("content_attributes is too large")
        try:
            raw = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            raise bad_request("content_attributes is not valid JSON") from None
        body = {"content_attributes": raw}
    return attributes(body, "content_attributes") or {}


def message_input(svc: Services, body: dict[str, Any]) -> dict[str, Any]:
    """The validated fields of an agent reply, as keyword arguments of messages_store.create."""
    content = opt_str(body, "content", max_len=svc.settings.max_message_length)
    if content is None or not content.strip():
        raise unprocessable("content can't be blank")
    content_type = body.get("content_type") or "text"
    if content_type not in CONTENT_TYPES:
        raise bad_request("content_type is not a known content type")
    return {
        "content": content,
        "message_type": _message_type(body.get("message_type")),
        "private": _private(body.get("private")),
        "content_type": str(content_type),
        "content_attributes": _content_attributes(body),
        "echo_id": opt_str(body, "echo_id", max_len=64),
    }


async def create(request: web.Request) -> web.Response:
    """An agent's reply or private note. `message.created` goes to the inbox's agents and,
    unless private, to the visitor; the write and its event commit together."""
    svc = services(request)
    who = await auth.agent(request)
    display_id = auth.path_id(request, "display_id")
    fields = message_input(svc, await json_body(request))
    sender = events.user_push(who.user)

    async def op(conn: AsyncConnection) -> dict[str, Any] | None:
        conv = await auth.find_conversation(conn, who, display_id)
        if conv is None:
            return None
        contact = await contacts_store.get_contact(conn, conv["contact_id"])
        contact_inbox = await contacts_store.get_contact_inbox(conn, conv["contact_inbox_id"])
        assert contact is not None and contact_inbox is not None
        msg, conv = await messages_store.create(
            conn,
            conv,
            contact=contact,
            contact_inbox=contact_inbox,
            sender_type="User",
            sender_id=who.user["id"],
            sender=sender,
            flood_limit=svc.settings.messages_per_minute,
            **fields,
        )
        return events.message_record(msg, conv["display_id"], sender)

    try:
        record = await svc.db.write(op)
    except Exception as exc:
        # A retry (an echo_id this agent already sent) answers the original message.
        echo_id = fields["echo_id"]
        if not messages_store.is_retry(exc, echo_id):
            raise
        found = await svc.db.read(messages_store.by_echo_id, "User", who.user["id"], echo_id)
        if found is None:
            raise
        msg, found_display_id = found
        record = events.message_record(msg, found_display_id, sender)
    if record is None:
        raise not_found()
    return json_response(record)
