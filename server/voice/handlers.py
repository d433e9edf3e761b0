"""GET .../conversations/voice_signed_url and POST .../conversations/voice_transcript."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from server.client_address import client_address
from server.errors import bad_gateway, bad_request, json_response, unprocessable
from server.params import json_body
from server.ratelimit import address_subject
from server.services import services
from server.store import voice_calls as calls_store
from server.store.inputs import TranscriptTurn
from server.store.voice_call_writes import KEY_PREFIX
from server.store.writes import WouldOpen
from server.voice.call_handlers import maybe_visitor
from server.voice.elevenlabs import ElevenLabsError
from server.widget import context

VOICE_AGENT = web.AppKey("elevenlabs", object)
MAX_EVENT_ID = 200


async def signed_url(request: web.Request) -> web.Response:
    """Trade the inbox's stored API key for a short-lived signed WebSocket URL. The key
    stays on the server; only the URL goes to the browser. Each call costs an ElevenLabs
    request, so each spends the visitor's budget and the inbox's (a 429 past either).

    Beside the URL, what the fork's call panel shows: `agent_name` (the inbox's first agent,
    else the account's first administrator, else the inbox's name), `brand_name` (the
    account's name), `avatar_url`, `account_id`, and the visitor's current conversation
    (`conversation_id`, when there is one). A visitor's earlier call ended in another tab must
    not end this new one at its first heartbeat: that signal is cleared."""
    inbox = await context.inbox(request)
    agent_id = inbox["elevenlabs_agent_id"]
    api_key = inbox["elevenlabs_api_key"]
    if not agent_id:
        raise unprocessable("No agent_id configured on this inbox")
    if not api_key:
        raise unprocessable("No API key configured on this inbox")
    await _spend_voice_budgets(request, inbox)
    svc = services(request)
    _, visitor = await maybe_visitor(request)
    if visitor is not None:
        await svc.store.clear_call_signal(visitor)
    ci_id = visitor.contact_inbox["id"] if visitor is not None else None
    agent, display_id = await svc.db.read(calls_store.panel, inbox, ci_id)
    client = request.app[VOICE_AGENT]
    try:
        url = await client.signed_url(api_key, agent_id)  # type: ignore[attr-defined]
    except ElevenLabsError as exc:
        raise bad_gateway(str(exc)) from None
    answer: dict[str, Any] = {
        "signed_url": url,
        "account_id": inbox["account_id"],
        "agent_name": (agent["name"] if agent else "") or inbox["name"],
        "brand_name": inbox["account_name"] or inbox["name"],
        "avatar_url": (agent["avatar_url"] if agent else None) or None,
    }
    if display_id is not None:
        answer["conversation_id"] = display_id
    return json_response(answer)


async def _spend_voice_budgets(request: web.Request, inbox: dict[str, Any]) -> None:
    """The visitor is the contact of a valid token for this inbox (no SQL: the JWT says
    who), else the client address: the endpoint works without a token (contract §8)."""
    svc = services(request)
    claims = context.contact_claims(
        svc.settings.secret_key_base, request.headers.get("X-Auth-Token")
    )
    if claims is not None and claims["inbox_id"] == inbox["id"]:
        visitor = f"contact:{inbox['id']}:{claims['source_id']}"
    else:
        address = address_subject(client_address(request, svc.settings.trusted_proxies))
        visitor = f"address:{address}"
    await svc.limiter.check("voice_urls_per_visitor", visitor)
    await svc.limiter.check("voice_urls_per_inbox", str(inbox["id"]))


def _turn(body: dict[str, Any], max_len: int) -> tuple[str, str, str | None]:
    source = body.get("source")
    if source not in ("user", "ai"):
        raise bad_request("invalid source")
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise bad_request("empty content")
    if len(content) > max_len:
        raise bad_request(f"content is too long (at most {max_len} characters)")
    if "\x00" in content:  # PostgreSQL cannot store it: a 500 there, unlike SQLite
        raise bad_request("content must not contain NUL characters")
    event_id = body.get("event_id")
    if event_id is not None:
        if isinstance(event_id, bool) or not isinstance(event_id, (str, int)):
            raise bad_request("event_id must be a string")
        event_id = str(event_id)
        if not event_id or len(event_id) > MAX_EVENT_ID or "\x00" in event_id:
            raise bad_request(f"event_id must be 1 to {MAX_EVENT_ID} characters, without NUL")
        if event_id.startswith(KEY_PREFIX):  # the keys of turns taken from ElevenLabs
            raise bad_request(f"event_id must not start with {KEY_PREFIX!r}")
    return source, content, event_id


async def transcript(request: web.Request) -> web.Response:
    """One turn of a voice call becomes one message (in the visitor's live call's
    conversation, tagged with the call). With no open conversation (a voice-first visitor)
    it opens one tagged initiated_from=voice_agent. The same event_id posted twice gives back
    the first message; without an event_id, so does the same turn repeated within
    VOICE_DUPLICATE_WINDOW (the fork's widget sends none)."""
    svc = services(request)
    visitor = await context.visitor(request)
    source, content, event_id = _turn(await json_body(request), svc.settings.max_message_length)
    turn = TranscriptTurn(
        visitor,
        source,
        content,
        event_id,
        svc.settings.messages_per_minute,
        duplicate_window=svc.settings.voice_duplicate_window,
    )
    try:
        written = await svc.store.transcript_turn(turn)
    except WouldOpen:
        # A new conversation (none open): rare, so its budget is checked only then, outside
        # the transaction, and the turn written again.
        await svc.limiter.check("conversations_per_contact", str(visitor.contact["id"]))
        written = await svc.store.transcript_turn(replace(turn, may_open=True))
    answer: dict[str, Any] = {"id": written.id, "conversation_id": written.display_id}
    if written.duplicate:
        answer["duplicate"] = True
    return json_response(answer)
