"""POST /api/v1/widget/conversations/transcript: mail the visitor's current conversation to
the contact's stored email (contract §2.6; Chatwoot 4.10 ignores any `email` in the body).

Answered as Chatwoot does: 200 whether or not a mail goes out (no conversation, no email on
the contact, or no SMTP configured: nothing is sent). Beyond it: 429 past the per
conversation budget (LIMIT_TRANSCRIPTS_PER_CONVERSATION, as newer Chatwoot versions), and
503 with Retry-After when this process's mail queue is full. The mail itself is sent by
the worker (server/mail/mailer.py), after the answer."""

from __future__ import annotations

from aiohttp import web

from server.errors import ApiError
from server.mail.mailer import TranscriptJob
from server.params import json_body
from server.services import services
from server.store import conversations as conversations_store
from server.widget import context

QUEUE_FULL = {"error": "too many transcript mails waiting to be sent; retry shortly"}


async def transcript(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    await json_body(request)  # a malformed body is still a 400
    email = visitor.contact["email"]
    if svc.mailer is None or not email:
        return web.Response(status=200)
    conv = await svc.db.read(conversations_store.current_for, visitor.contact_inbox["id"])
    if conv is None:
        return web.Response(status=200)
    await svc.limiter.check("transcripts_per_conversation", str(conv["id"]))
    job = TranscriptJob(conv["id"], visitor.contact_inbox["id"], email)
    if not svc.mailer.submit(job):
        raise ApiError(503, QUEUE_FULL, headers={"Retry-After": "30"})
    return web.Response(status=200)
