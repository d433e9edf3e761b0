"""GET /api/v1/accounts/{account_id}/contacts/{contact_id}/widget_events: what the widget
reported about a contact (POST /api/v1/widget/events), newest first, in the inboxes the
caller sees. A contact of another account, or seen only in other inboxes, lists nothing:
the same answer as one with no events, so ids cannot be probed."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.agent import auth
from server.errors import json_response
from server.events import unix_seconds
from server.services import services
from server.store import widget_events as widget_events_store


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "event_info": row["event_info"],
        "inbox_id": row["inbox_id"],
        "contact_id": row["contact_id"],
        "created_at": unix_seconds(row["created_at"]),
    }


async def index(request: web.Request) -> web.Response:
    svc = services(request)
    who = await auth.agent(request)
    contact_id = auth.path_id(request, "contact_id")
    rows = await svc.db.read(
        widget_events_store.of_contact,
        who.account_id,
        tuple(who.inbox_ids),
        contact_id,
        widget_events_store.KEPT_PER_VISITOR,
    )
    return json_response({"payload": [_view(row) for row in rows]})
