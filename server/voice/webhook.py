"""POST /webhooks/elevenlabs: ElevenLabs' post-call webhook. Its transcript is written into
the call it belongs to the way the end of a call writes it (server/voice/calls.py), so a call
whose browser vanished still gets every turn.

The body names the ElevenLabs conversation; the call linked to it names the inbox, whose
webhook secret must verify the `ElevenLabs-Signature` header (the SDK's helper: an
HMAC-SHA256 over "<timestamp>.<body>", at most 30 minutes old). Anything else is a 401 and
writes nothing. The body is bounded like every body (MAX_BODY_BYTES: a 413 past it)."""

from __future__ import annotations

import logging
import re

import orjson
from aiohttp import web

from server.errors import bad_request, json_response, not_found, unauthorized
from server.params import read_body
from server.services import services
from server.store import voice_calls as calls_store
from server.store.inputs import CallEnd
from server.voice.elevenlabs import WebhookSignatureError, transcript_from

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "ElevenLabs-Signature"
_EL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


async def elevenlabs(request: web.Request) -> web.Response:
    svc = services(request)
    raw = await read_body(request)  # bounded in size (413) and time (408)
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature or len(signature) > 1024:
        raise unauthorized("missing or invalid ElevenLabs-Signature")
    try:
        text = raw.decode()
        event = orjson.loads(raw)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        raise bad_request("the body is not JSON") from None
    data = event.get("data") if isinstance(event, dict) else None
    el_id = data.get("conversation_id") if isinstance(data, dict) else None
    if not isinstance(el_id, str) or not _EL_ID.match(el_id):
        raise bad_request("data.conversation_id is missing or invalid")
    found = None
    call = await svc.db.read(calls_store.by_elevenlabs_id, el_id)
    if call is not None:
        found = await svc.db.read(calls_store.with_inbox, call["id"])
    if found is None:
        raise not_found({"error": "no call is linked to this ElevenLabs conversation"})
    call, inbox = found["call"], found["inbox"]
    secret = inbox["elevenlabs_webhook_secret"]
    if not secret:
        log.warning(
            "ElevenLabs webhook for inbox %s refused: the inbox has no webhook secret (set it"
            " with `python -m server admin create-inbox --elevenlabs-webhook-secret`)",
            inbox["id"],
        )
        raise unauthorized("no webhook secret configured for this inbox")
    try:
        verified = svc.voice.client.verify_webhook(text, signature, secret)
    except WebhookSignatureError:
        log.warning("ElevenLabs webhook for inbox %s: bad signature, refused", inbox["id"])
        raise unauthorized("invalid signature") from None
    kind = verified.get("type")
    if kind != "post_call_transcription":
        return json_response({"ok": True, "ignored": kind})
    if call["ended_at"] is None:  # ElevenLabs says the call is over before any heartbeat did
        svc.voice.observe(await svc.store.end_call(CallEnd("elevenlabs_ended", call_id=call["id"])))
        call = (await svc.db.read(calls_store.by_id, call["id"])) or call
    written = await svc.voice.apply(call, inbox, transcript_from(verified["data"]), final=True)
    return json_response({"ok": True, "written": written.written})
