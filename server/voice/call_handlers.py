"""The voice fork's call endpoints under /api/v1/widget/conversations/ (its
ElevenLabsVoiceButton.vue and the controller beside it): voice_call_active, voice_heartbeat,
voice_call_ended, voice_link_elevenlabs, voice_history, voice_transcript_poll, inbox_config.

Paths, fields and status codes are the fork's. Where the fork answers 200 without a visitor
(no or an expired X-Auth-Token: after a reload the widget may have none), so do these, with
nothing found; unlike the fork they never fall back to scanning other visitors' data."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from server import events
from server.errors import ApiError, bad_gateway, bad_request, json_response
from server.params import json_body
from server.services import services
from server.store import contacts as contacts_store
from server.store import voice_calls as calls_store
from server.store.inputs import CallEnd, CallHeartbeat, CallLink, Visitor
from server.store.writes import CallConflict, WouldOpen
from server.voice.elevenlabs import ElevenLabsError
from server.widget import context
from server.widget.config import enabled_features

T = TypeVar("T")

# A heartbeat still arriving this many seconds after its call was ended elsewhere is told to
# stop (end_requested); later ones start a new call (the fork's 30 s).
END_SIGNAL_WINDOW = 30.0
HISTORY_DEFAULT, HISTORY_MAX = 20, 50
# ElevenLabs conversation ids are short words ("conv_01j..."); anything else is refused.
# The rate limit heartbeats, links and ends spend (each is a write).
CALL_BUDGET = "voice_calls_per_visitor"
_EL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


async def maybe_visitor(
    request: web.Request, *, budget: str | None = None
) -> tuple[dict[str, Any], Visitor | None]:
    """The inbox (404 for an unknown website_token) and the visitor of a valid X-Auth-Token
    for it, or None. `budget`: the rate limit the visitor spends first (keyed by the
    token's claims, before any SQL)."""
    inbox = await context.inbox(request)
    svc = services(request)
    claims = context.contact_claims(
        svc.settings.secret_key_base, request.headers.get("X-Auth-Token")
    )
    if claims is None or claims["inbox_id"] != inbox["id"]:
        return inbox, None
    if budget is not None:
        await svc.limiter.check(budget, f"{inbox['id']}:{claims['source_id']}")
    found = await svc.db.read(contacts_store.find_identity, inbox["id"], claims["source_id"])
    if found is None:
        return inbox, None
    return inbox, Visitor(inbox=inbox, contact=found[0], contact_inbox=found[1])


async def _opening(request: web.Request, v: Visitor, write: Callable[[bool], Awaitable[T]]) -> T:
    """`write(may_open=False)`, and when the call needs a new conversation (WouldOpen), the
    contact's budget of new conversations spent first and `write(True)`."""
    try:
        return await write(False)
    except WouldOpen:
        await services(request).limiter.check("conversations_per_contact", str(v.contact["id"]))
        return await write(True)


async def call_active(request: web.Request) -> web.Response:
    """Is a call live for this visitor (another tab, before a reload)?"""
    svc = services(request)
    _, v = await maybe_visitor(request)
    answer: dict[str, Any] = {
        "active": False,
        "source": None,
        "contact_id": v.contact["id"] if v else None,
        "contact_inbox_id": v.contact_inbox["id"] if v else None,
        "last_heartbeat": None,
    }
    if v is None:
        return json_response(answer)
    call = await svc.db.read(calls_store.live, v.contact_inbox["id"])
    timeout = svc.settings.voice_heartbeat_timeout
    if call is not None and call["last_heartbeat_at"] >= time.time() - timeout:
        answer.update(
            active=True,
            source=f"voice_call#{call['id']}",
            last_heartbeat=events.iso(call["last_heartbeat_at"]),
            call_id=call["id"],
        )
    return json_response(answer)


async def heartbeat(request: web.Request) -> web.Response:
    """Every 3 s of a live call: the call is alive (started by the first one). A call ended
    elsewhere answers end_requested, and the widget stops it."""
    svc = services(request)
    _, v = await maybe_visitor(request, budget=CALL_BUDGET)
    now = events.iso(time.time())
    if v is None:
        return json_response(
            {
                "ok": False,
                "written": [],
                "contact_id": None,
                "contact_inbox_id": None,
                "timestamp": now,
            }
        )
    state = await _opening(
        request,
        v,
        lambda may_open: svc.store.call_heartbeat(CallHeartbeat(v, END_SIGNAL_WINDOW, may_open)),
    )
    svc.voice.observe(state)
    if state.end_requested:
        return json_response({"ok": False, "end_requested": True})
    assert state.call is not None
    return json_response(
        {
            "ok": True,
            "written": ["voice_call"],
            "contact_id": v.contact["id"],
            "contact_inbox_id": v.contact_inbox["id"],
            "timestamp": events.iso(state.call["last_heartbeat_at"]),
            "call_id": state.call["id"],
        }
    )


async def call_ended(request: web.Request) -> web.Response:
    """The widget ended the call (for every tab: their heartbeats get end_requested). Always
    200, as the fork's; the transcript is reconciled in the background."""
    svc = services(request)
    _, v = await maybe_visitor(request, budget=CALL_BUDGET)
    if v is None:
        return json_response({"ok": True, "ended": False, "call_id": None})
    state = await svc.store.end_call(CallEnd("widget", visitor=v))
    svc.voice.observe(state)
    return json_response(
        {"ok": True, "ended": state.ended, "call_id": state.call["id"] if state.call else None}
    )


async def link(request: web.Request) -> web.Response:
    """Ties the ElevenLabs conversation (what the SDK says after connecting) to the
    visitor's call. The same id for another visitor's call is a 409."""
    svc = services(request)
    _, v = await maybe_visitor(request, budget=CALL_BUDGET)
    if v is None:
        v = await context.visitor(request)  # the 401 (or 404) a visitor route gives
    body = await json_body(request)
    el_id = body.get("elevenlabs_conversation_id")
    if el_id is None or (isinstance(el_id, str) and not el_id.strip()):
        raise bad_request("missing elevenlabs_conversation_id")
    if not isinstance(el_id, str) or not _EL_ID.match(el_id.strip()):
        raise bad_request(
            "elevenlabs_conversation_id must be 1 to 128 letters, digits, '_', '-', '.' or ':'"
        )
    el_id = el_id.strip()
    try:
        state = await _opening(
            request, v, lambda may_open: svc.store.link_call(CallLink(v, el_id, may_open))
        )
    except CallConflict:
        raise ApiError(
            409, {"error": "elevenlabs_conversation_id belongs to another call"}
        ) from None
    svc.voice.observe(state)
    return json_response(
        {
            "ok": True,
            "elevenlabs_conversation_id": el_id,
            "chatwoot_conversation_id": state.display_id,
        }
    )


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) <= 9 else default


async def history(request: web.Request) -> web.Response:
    """The last voice turns of the visitor's current conversation, oldest first (the
    widget gives them to a new ElevenLabs session after a reload)."""
    svc = services(request)
    _, v = await maybe_visitor(request)
    limit = _int_param(request, "limit", HISTORY_DEFAULT)
    if not 0 < limit <= HISTORY_MAX:
        limit = HISTORY_DEFAULT
    found = None
    if v is not None:
        found = await svc.db.read(calls_store.history_of_visitor, v.contact_inbox["id"], limit)
    if found is None:
        return json_response({"lines": [], "conversation_id": None, "has_history": False})
    conv, rows = found
    lines = [
        {
            "role": "user" if row["message_type"] == events.INCOMING else "agent",
            "content": row["content"] or "",
            "at": events.iso(row["created_at"]),
        }
        for row in rows
    ]
    return json_response(
        {"lines": lines, "conversation_id": conv["display_id"], "has_history": bool(lines)}
    )


async def transcript_poll(request: web.Request) -> web.Response:
    """The turns of the visitor's call from ElevenLabs' own transcript (the call's linked
    conversation only), every one the conversation lacks written as a voice turn. Answers
    the turns after `synced_count` (0 when `last_conv_id` names another conversation)."""
    svc = services(request)
    _, v = await maybe_visitor(request)
    empty = {"turns": [], "conversation_id": None, "total_count": 0}
    if v is None:
        return json_response(empty)
    call = await svc.db.read(calls_store.latest_of_visitor, v.contact_inbox["id"])
    if call is None or not call["elevenlabs_conversation_id"] or not v.inbox["elevenlabs_api_key"]:
        return json_response(empty)
    await svc.limiter.check("voice_polls_per_visitor", str(v.contact["id"]))
    el_id = call["elevenlabs_conversation_id"]
    try:
        fetched = await svc.voice.client.conversation(v.inbox["elevenlabs_api_key"], el_id)
    except ElevenLabsError as exc:
        svc.voice.reconcile_failures += 1
        raise bad_gateway(str(exc)) from None
    written = await svc.voice.apply(call, v.inbox, fetched, final=False)
    synced = _int_param(request, "synced_count", 0)
    if request.query.get("last_conv_id", el_id) != el_id:
        synced = 0
    turns = [{"role": role, "message": message} for _, role, message in fetched.turns[synced:]]
    return json_response(
        {
            "turns": turns,
            "conversation_id": el_id,
            "total_count": len(fetched.turns),
            "written": written.written,
        }
    )


async def inbox_config(request: web.Request) -> web.Response:
    """The inbox's voice settings for the widget; never its API key or agent id."""
    inbox = await context.inbox(request)
    features = enabled_features(inbox)
    return json_response(
        {
            "payload": {
                "inbox": {
                    "id": inbox["id"],
                    "name": inbox["name"],
                    "selected_feature_flags": features,
                    "voice_agent_provider": "elevenlabs",
                    "voice_agent_config_data": {},
                    "voice_agent_enabled": "voice_agent" in features,
                }
            }
        }
    )
