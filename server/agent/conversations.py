"""/api/v1/accounts/{account_id}/conversations and its member actions (contract §6).

Every handler authenticates first (server.agent.auth), then reads or writes only
conversations of the caller's account and visible inboxes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server import events, typing
from server.agent import auth
from server.errors import bad_request, json_response, not_found
from server.params import json_body, opt_int
from server.services import services
from server.store import conversation_search, payloads
from server.store import conversations as conversations_store
from server.store.inputs import MarkRead, StatusChange

PER_PAGE = 25
MAX_PAGE = 100_000
LIST_STATUSES = (*conversations_store.STATUSES, "all")


def _status_filter(raw: str | None) -> str | None:
    """?status=: open by default, as Chatwoot's ConversationFinder; `all` lifts the filter."""
    status = raw or "open"
    if status not in LIST_STATUSES:
        raise bad_request(f"status must be one of: {', '.join(LIST_STATUSES)}")
    return None if status == "all" else status


def _assignee_type(raw: str | None) -> str:
    """?assignee_type=: me, unassigned, assigned or all (the default), as Chatwoot's."""
    value = raw or "all"
    if value not in conversations_store.ASSIGNEE_TYPES:
        raise bad_request(
            f"assignee_type must be one of: {', '.join(conversations_store.ASSIGNEE_TYPES)}"
        )
    return value


def page_param(request: web.Request) -> int:
    """?page=, from 1."""
    page = opt_int(request.query.get("page"), "page")
    page = 1 if page is None else page
    if not 1 <= page <= MAX_PAGE:
        raise bad_request(f"page must be between 1 and {MAX_PAGE}")
    return page


async def index(request: web.Request) -> web.Response:
    svc = services(request)
    who = await auth.agent(request)
    status = _status_filter(request.query.get("status"))
    assignee_type = _assignee_type(request.query.get("assignee_type"))
    page = page_param(request)

    meta, payload = await svc.db.read(
        payloads.agent_list,
        who.account_id,
        who.inbox_ids,
        conversations_store.ListFilter(who.user["id"], status, assignee_type),
        page=page,
        per_page=PER_PAGE,
    )
    return json_response({"data": {"meta": meta, "payload": payload}})


SEARCH_MIN, SEARCH_MAX = 2, 100


def search_query(request: web.Request) -> str:
    """?q=: 2 to 100 characters once trimmed."""
    query = (request.query.get("q") or "").strip()
    if not SEARCH_MIN <= len(query) <= SEARCH_MAX:
        raise bad_request(f"q must be {SEARCH_MIN} to {SEARCH_MAX} characters")
    if "\x00" in query:
        raise bad_request("q must not contain NUL characters")
    return query


async def search(request: web.Request) -> web.Response:
    """GET conversations/search?q=: conversations of any status whose contact (name, email,
    phone number, identifier) or messages contain `q`, latest activity first, 25 a page,
    in the list's shape (Chatwoot's)."""
    svc = services(request)
    who = await auth.agent(request)
    query = search_query(request)
    page = page_param(request)
    await svc.limiter.check("searches_per_agent", f"user:{who.user['id']}")
    meta, payload = await svc.db.read(
        payloads.agent_list,
        who.account_id,
        who.inbox_ids,
        conversations_store.ListFilter(
            who.user["id"],
            search=conversation_search.matching(who.account_id, who.inbox_ids, query),
        ),
        page=page,
        per_page=PER_PAGE,
    )
    return json_response({"data": {"meta": meta, "payload": payload}})


async def show(request: web.Request) -> web.Response:
    svc = services(request)
    who = await auth.agent(request)
    conv = await auth.conversation(request, who)
    return json_response(await svc.db.read(payloads.conversation, conv))


def _status_input(body: dict[str, Any]) -> str | None:
    status = body.get("status")
    if status is None or status == "":
        return None
    if status not in conversations_store.STATUSES:
        raise bad_request(f"status must be one of: {', '.join(conversations_store.STATUSES)}")
    return str(status)


async def toggle_status(request: web.Request) -> web.Response:
    """Sets the given status, or toggles open <-> resolved when none is given. Decided under
    the conversation's row lock, so two toggles at once end where they started."""
    svc = services(request)
    who = await auth.agent(request)
    display_id = auth.path_id(request, "display_id")
    wanted = _status_input(await json_body(request))
    change = StatusChange(who.names(display_id), wanted, actor=who.user)
    conv = await svc.store.change_status(change)
    if conv is None:
        raise not_found()
    return json_response(
        {
            "meta": {},
            "payload": {
                "success": True,
                "conversation_id": conv["display_id"],
                "current_status": conv["status"],
                "snoozed_until": None,
            },
        }
    )


def _is_private(body: dict[str, Any]) -> bool:
    value = body.get("is_private", False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request("is_private must be true or false")
    return value


async def toggle_typing_status(request: web.Request) -> web.Response:
    svc = services(request)
    who = await auth.agent(request)
    conv = await auth.conversation(request, who)
    body = await json_body(request)
    on = typing.status(body)
    is_private = _is_private(body)
    await svc.limiter.check("typing_per_sender", f"user:{who.user['id']}")
    conv_push = await svc.db.read(payloads.conversation, conv)
    typing.publish(
        svc.bus,
        conv,
        conv_push,
        events.user_push(who.user),
        on=on,
        typer_token=who.user["pubsub_token"],
        is_private=is_private,
    )
    return web.Response(status=200)


async def update_last_seen(request: web.Request) -> web.Response:
    """The agent read the conversation: stamp agent_last_seen_at, zero unread_count. Like
    Chatwoot (update_columns, no callbacks) this emits no event."""
    svc = services(request)
    who = await auth.agent(request)
    display_id = auth.path_id(request, "display_id")
    await json_body(request)  # a malformed body is still a 400
    if not await svc.store.mark_read(MarkRead(who.names(display_id))):
        raise not_found()
    return json_response({})
