"""/api/v1/accounts/{account_id}/conversations/{display_id}/messages (contract §6).

Agents see every message of a conversation, private notes and activity included; their
replies are outgoing messages that never reopen a resolved conversation."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from server import events, interactive, views
from server.agent import auth
from server.errors import bad_request, json_response, not_found, unprocessable
from server.params import attributes, json_body, opt_int, opt_str
from server.services import Services, services
from server.store import messages as messages_store
from server.store.inputs import AgentMessage
from server.uploads import Received, is_multipart

# The multipart field of an agent's files (contract §6).
FILE_FIELD = "attachments[]"

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
    history = await svc.db.read(
        messages_store.agent_history, who.names(display_id), before=before, after=after
    )
    if history is None:
        raise not_found()
    conv, assignee = history.conversation, history.assignee
    files = await svc.attachments.render_pages(history.attachments)
    return json_response(
        {
            "meta": {
                "labels": list(conv["labels"]),
                "additional_attributes": conv["additional_attributes"],
                "contact": events.contact_push(history.contact),
                "assignee": events.user_push(assignee) if assignee else None,
                "agent_last_seen_at": events.unix_seconds(conv["agent_last_seen_at"]),
            },
            "payload": [
                views.message_for_agents(m, conv["display_id"], sender, files.get(m["id"]))
                for m, sender in history.messages
            ],
        }
    )


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


def message_input(
    svc: Services, body: dict[str, Any], *, with_files: bool = False
) -> dict[str, Any]:
    """The validated fields of an agent reply (AgentMessage's); blank content only with
    files."""
    content = opt_str(body, "content", max_len=svc.settings.max_message_length)
    if content is None or not content.strip():
        if not with_files:
            raise unprocessable("content can't be blank")
        content = None
    content_type = body.get("content_type") or "text"
    if content_type not in CONTENT_TYPES:
        raise bad_request("content_type is not a known content type")
    return {
        "content": content,
        "message_type": _message_type(body.get("message_type")),
        "private": _private(body.get("private")),
        "content_type": str(content_type),
        "content_attributes": interactive.offered(content_type, _content_attributes(body)),
        "echo_id": opt_str(body, "echo_id", max_len=64),
    }


async def create(request: web.Request) -> web.Response:
    """An agent's reply or private note. `message.created` goes to the inbox's agents and,
    unless private, to the visitor; the write and its event commit together. A retry (an
    echo_id this agent already sent) answers the original message."""
    svc = services(request)
    who = await auth.agent(request)
    display_id = auth.path_id(request, "display_id")
    if not is_multipart(request):
        return await _create(svc, who, display_id, await json_body(request))
    # Files are kept under the conversation's account and inbox, as a visitor's are; a
    # conversation the agent cannot see is a 404 before any byte is stored. (The one read
    # this costs is for messages with files only.)
    conv = await auth.conversation(request, who)
    owner = {"account_id": conv["account_id"], "id": conv["inbox_id"]}
    received = await svc.attachments.receive(request, owner, FILE_FIELD)
    try:
        return await _create(svc, who, display_id, dict(received.fields), received, owner)
    finally:
        await received.close()


async def _create(
    svc: Services,
    who: auth.Agent,
    display_id: int,
    body: dict[str, Any],
    received: Received | None = None,
    owner: dict[str, Any] | None = None,
) -> web.Response:
    fields = message_input(svc, body, with_files=received is not None and bool(received.files))
    files = await svc.attachments.store(received, owner) if received is not None else ()
    sent = await svc.store.agent_message(
        AgentMessage(
            conversation=who.names(display_id),
            author=who.user,
            flood_limit=svc.settings.messages_per_minute,
            attachments=files,
            **fields,
        )
    )
    if sent is None:
        raise not_found()
    if received is not None:
        received.written(sent.attachments)
    rendered = await svc.attachments.render(sent.attachments)
    return json_response(
        views.message_for_agents(sent.message, sent.display_id, sent.sender, rendered)
    )
