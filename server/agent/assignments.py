"""Who answers a conversation: POST .../conversations/{display_id}/assignments (Chatwoot's
AssignmentsController) and GET .../inbox_members/{inbox_id}, the agents one may assign."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server import events
from server.agent import auth
from server.errors import bad_request, json_response, not_found
from server.params import json_body
from server.services import services
from server.store import accounts as accounts_store
from server.store.inputs import Assignment


def _assignee_id(body: dict[str, Any]) -> int | None:
    """`assignee_id`: an agent's id, or null to unassign, as Chatwoot's."""
    value = body["assignee_id"]
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < auth.MAX_ID:
        raise bad_request("assignee_id must be an agent's id or null")
    return value


async def create(request: web.Request) -> web.Response:
    """Assigns the conversation (or unassigns it: `assignee_id` null). Answers the assignee
    as Chatwoot's agent shape, or null. 422 for someone who does not answer the inbox."""
    svc = services(request)
    who = await auth.agent(request)
    display_id = auth.path_id(request, "display_id")
    body = await json_body(request)
    if "assignee_id" not in body:
        # As Chatwoot's: without assignee_id (a team assignment, which we do not model)
        # nothing changes and the answer is null; but the conversation must be visible.
        await auth.conversation(request, who)
        return json_response(None)
    assignee_id = _assignee_id(body)
    done = await svc.store.assign(Assignment(who.names(display_id), assignee_id, who.user))
    if done is None:
        raise not_found()
    _, assignee = done
    return json_response(None if assignee is None else events.user_push(assignee))


async def inbox_members(request: web.Request) -> web.Response:
    """The agents who answer an inbox the caller sees: its members and the account's
    administrators (whom an assignment accepts). 404 for an inbox the caller does not see."""
    svc = services(request)
    who = await auth.agent(request)
    inbox_id = auth.path_id(request, "inbox_id")
    if inbox_id not in who.inbox_ids:
        raise not_found()
    inbox = {"id": inbox_id, "account_id": who.account_id}
    rows = await svc.db.read(accounts_store.inbox_agents, inbox)
    return json_response({"payload": [events.user_push(row) for row in rows]})
