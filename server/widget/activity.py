"""POST /api/v1/widget/events and GET /api/v1/widget/campaigns (contract §2.8): what the
widget calls on every page load besides the conversation.

Chatwoot dispatches a widget event to webhooks and bots; we have neither, so the event is
recorded for agents (GET /api/v1/accounts/{id}/contacts/{id}/widget_events), bounded per
visitor and rate-limited per contact. Campaigns do not exist yet: the list is empty."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from server.errors import bad_request, json_response
from server.params import attributes, json_body
from server.services import services
from server.store.inputs import WidgetEvent
from server.store.widget_events import KEPT_PER_VISITOR
from server.widget import context

# Chatwoot's names look like `webwidget.triggered`, `campaign.triggered`.
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
MAX_INFO_BYTES = 4096
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8}){0,2}")


def _language(raw: str | None) -> str | None:
    """A language tag, or None for anything that is not one (never stored as sent)."""
    if not raw:
        return None
    tag = raw.split(",", 1)[0].split(";", 1)[0].strip()
    return tag if _LANGUAGE.fullmatch(tag) else None


def event_input(request: web.Request, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, event_info) of a request, validated; event_info gains what Chatwoot adds
    (`widget_language` from ?locale=, `browser_language` from Accept-Language)."""
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise bad_request("name must be 1 to 100 letters, digits or _ . : -")
    info = attributes(body, "event_info", max_bytes=MAX_INFO_BYTES) or {}
    return name, {
        **info,
        "widget_language": _language(request.query.get("locale")),
        "browser_language": _language(request.headers.get("Accept-Language")),
    }


async def create_event(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    name, info = event_input(request, await json_body(request))
    await svc.limiter.check("widget_events_per_contact", str(visitor.contact["id"]))
    await svc.store.record_widget_event(WidgetEvent(visitor, name, info, KEPT_PER_VISITOR))
    return web.Response(status=204)


async def campaigns(request: web.Request) -> web.Response:
    """The inbox's campaigns: none yet. Checked like Chatwoot (website_token only, no
    visitor): an unknown token is a 404, a suspended account a 401."""
    await context.inbox(request)
    return json_response([])
