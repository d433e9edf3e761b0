"""/api/v1/widget/messages: history, catch-up and the visitor's own messages (§2.3, §2.4)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server import events, views
from server.errors import json_response, not_found, unprocessable
from server.params import json_body, obj, opt_int, opt_str
from server.services import Services, services
from server.store import messages as messages_store
from server.store.inputs import Answer, VisitorMessage
from server.uploads import Received, is_multipart
from server.widget import context

# The multipart field of the widget's files (contract §2.4).
FILE_FIELD = "message[attachments][]"


def message_input(
    svc: Services, message: dict[str, Any], *, with_files: bool = False
) -> tuple[str | None, str | None]:
    """(content, echo_id) of a message the visitor sends; blank content is refused, unless
    files come with it (then it is None)."""
    content = opt_str(
        message, "content", max_len=svc.settings.max_message_length, label="message.content"
    )
    if content is None or not content.strip():
        if not with_files:
            raise unprocessable("message.content can't be blank")
        content = None
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
    history = await svc.db.read(messages_store.visitor_history, visitor, before=before, after=after)
    if history is None:
        return json_response({"payload": [], "meta": {}})
    conv = history.conversation
    files = await svc.attachments.render_pages(history.attachments)
    return json_response(
        {
            "payload": [
                views.message_for_visitor(m, conv["display_id"], sender, files.get(m["id"]))
                for m, sender in history.messages
            ],
            "meta": {"contact_last_seen_at": events.unix_seconds(conv["contact_last_seen_at"])},
        }
    )


async def create(request: web.Request) -> web.Response:
    """The visitor's message goes to their current conversation, even a resolved one (which
    it reopens); the first message opens a conversation. A retry (an `echo_id` the visitor
    already sent) answers the original message and writes nothing. The visitor is looked up
    inside the write: this is the busiest endpoint."""
    svc = services(request)
    box, source_id = await context.claim(request)
    if not is_multipart(request):
        return await _create(request, svc, box, source_id, obj(await json_body(request), "message"))
    received = await svc.attachments.receive(request, box, FILE_FIELD)
    try:
        return await _create(request, svc, box, source_id, form_message(received.fields), received)
    finally:
        await received.close()


def form_message(fields: dict[str, str]) -> dict[str, Any]:
    """message[content] and its siblings of a multipart body, as the JSON body's message."""
    return {
        name[len("message[") : -1]: value
        for name, value in fields.items()
        if name.startswith("message[") and name.endswith("]") and "[" not in name[8:-1]
    }


async def _create(
    request: web.Request,
    svc: Services,
    box: dict[str, Any],
    source_id: str,
    message: dict[str, Any],
    received: Received | None = None,
) -> web.Response:
    with_files = received is not None and bool(received.files)
    content, echo_id = message_input(svc, message, with_files=with_files)
    reply_to = opt_int(message.get("reply_to"), "message.reply_to")
    opens_with = conversation_attributes(request, message)
    files = await svc.attachments.store(received, box) if received is not None else ()
    sent = await svc.store.visitor_message(
        VisitorMessage(
            inbox=box,
            source_id=source_id,
            content=content,
            echo_id=echo_id,
            reply_to=reply_to,
            opens_with=opens_with,
            flood_limit=svc.settings.messages_per_minute,
            attachments=files,
        )
    )
    if sent is None:
        raise not_found()
    if received is not None:
        received.written(sent.attachments)
    rendered = await svc.attachments.render(sent.attachments)
    return json_response(
        views.message_for_visitor_post(sent.message, sent.display_id, sent.sender, rendered)
    )


def _message_id(request: web.Request) -> int:
    """The path's message id; a malformed one is "not found", like an unknown one."""
    raw = request.match_info.get("id", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise not_found()
    return int(raw)


async def update(request: web.Request) -> web.Response:
    """The visitor answers an interactive message (contract §2.5): {"contact": {"email"}} for
    an email prompt, {"message": {"submitted_values": ...}} for an option list, a form or
    the CSAT survey. 404 for a message that is not one of the visitor's own conversations in
    this inbox; 422 for an answer the message did not offer (nothing written). Answers the
    contact, as Chatwoot."""
    svc = services(request)
    visitor = await context.visitor(request)
    message_id = _message_id(request)
    await svc.limiter.check("widget_updates_per_contact", f"contact:{visitor.contact['id']}")
    body = await json_body(request)
    email = opt_str(obj(body, "contact"), "email", max_len=320, label="contact.email")
    answered = await svc.store.answer_message(
        Answer(
            visitor=visitor,
            message_id=message_id,
            values=obj(body, "message").get("submitted_values"),
            email=email,
        )
    )
    if answered is None:
        raise not_found()
    return json_response({"contact": views.contact_record(answered.contact)})
