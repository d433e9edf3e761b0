"""/api/v1/widget/labels: the customer's page labels the visitor's current conversation
($chatwoot.setLabel / removeLabel; contract §2.8). Both answer 204 whatever happened, as
Chatwoot: no conversation yet, a title the account has no label of (ignored), a label the
conversation has already or does not have."""

from __future__ import annotations

from aiohttp import web

from server import labels
from server.errors import ApiError
from server.params import json_body
from server.services import services
from server.store.inputs import LabelChange
from server.widget import context


def _title(value: object) -> str | None:
    """The title, or None for one no label can have (which is then ignored, not an error)."""
    try:
        return labels.title(value, "label")
    except ApiError as exc:
        if exc.status == 422:
            return None
        raise


async def create(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    await svc.limiter.check("widget_updates_per_contact", f"contact:{visitor.contact['id']}")
    title = _title((await json_body(request)).get("label"))
    if title is not None:
        await svc.store.change_labels(LabelChange(visitor, add=title))
    return web.Response(status=204)


async def destroy(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    await svc.limiter.check("widget_updates_per_contact", f"contact:{visitor.contact['id']}")
    title = _title(request.match_info.get("label", ""))
    if title is not None:
        await svc.store.change_labels(LabelChange(visitor, remove=title))
    return web.Response(status=204)
