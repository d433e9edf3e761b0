"""Labels in the agent API, as Chatwoot's: the account's labels
(/api/v1/accounts/{id}/labels) and a conversation's
(/api/v1/accounts/{id}/conversations/{display_id}/labels, whose POST replaces the set).

Any member of the account lists them; only an administrator creates one (Chatwoot's
LabelPolicy). A conversation's labels are titles (server/labels.py), as Chatwoot's tags:
one the account has no label of may be set by an agent; the widget may add only the
account's labels."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server import labels, views
from server.agent import auth
from server.errors import bad_request, json_response, not_found, unauthorized
from server.params import json_body, opt_str
from server.services import services
from server.store import labels as labels_store
from server.store.inputs import LabelChange, NewLabel

NOT_ALLOWED = "You are not authorized to do this action"


async def index(request: web.Request) -> web.Response:
    svc = services(request)
    who = await auth.agent(request)
    rows = await svc.db.read(labels_store.of_account, who.account_id)
    return json_response({"payload": [views.label_record(row) for row in rows]})


def _show_on_sidebar(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, bool):
        raise bad_request("show_on_sidebar must be true or false")
    return value


async def create(request: web.Request) -> web.Response:
    """A new label of the account: {"title", "description"?, "color"?, "show_on_sidebar"?}.
    422 for a title that is blank, malformed or taken (titles are lower case)."""
    svc = services(request)
    who = await auth.agent(request)
    if not who.is_admin:
        raise unauthorized(NOT_ALLOWED)
    body = await json_body(request)
    label = body.get("label") if isinstance(body.get("label"), dict) else body
    new = NewLabel(
        account_id=who.account_id,
        title=labels.title(label.get("title")),
        description=opt_str(label, "description", max_len=labels.MAX_DESCRIPTION) or "",
        color=labels.color(label.get("color")),
        show_on_sidebar=_show_on_sidebar(label.get("show_on_sidebar")),
    )
    return json_response(views.label_record(await svc.store.create_label(new)))


async def of_conversation(request: web.Request) -> web.Response:
    who = await auth.agent(request)
    conv = await auth.conversation(request, who)
    return json_response({"payload": list(conv["labels"])})


async def set_for_conversation(request: web.Request) -> web.Response:
    """{"labels": [...]}: the conversation's labels become exactly these (conversation.updated
    when that changes them)."""
    svc = services(request)
    who = await auth.agent(request)
    display_id = auth.path_id(request, "display_id")
    wanted = labels.titles((await json_body(request)).get("labels"))
    conv = await svc.store.change_labels(LabelChange(who.names(display_id), replace=wanted))
    if conv is None:
        raise not_found()
    return json_response({"payload": list(conv["labels"])})
