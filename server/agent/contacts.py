"""An account's contacts, as agents see them: GET/PUT .../contacts/{contact_id} and
GET .../contacts/{contact_id}/conversations (Chatwoot's ContactsController shapes). A contact
is visible to an agent when it was seen in one of the agent's inboxes; any other id is a 404,
the same answer as one that does not exist."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from server import views
from server.agent import auth
from server.errors import bad_request, json_response, not_found, unprocessable
from server.interactive import email_address
from server.params import json_body, opt_str
from server.services import services
from server.store import contact_writes, payloads
from server.store import conversations as conversations_store
from server.store.inputs import ContactEdit
from server.store.tables import conversations

MAX_NAME = 255
# E.164, as Chatwoot validates phone_number: a +, then up to 15 digits.
PHONE = re.compile(r"\+[1-9][0-9]{1,14}")
CONVERSATIONS_SHOWN = 25


async def _visible(request: web.Request, who: auth.Agent) -> dict[str, Any]:
    contact_id = auth.path_id(request, "contact_id")
    found = await services(request).db.read(
        contact_writes.visible_contact, who.account_id, tuple(who.inbox_ids), contact_id
    )
    if found is None:
        raise not_found()
    return found


def _record(contact: dict[str, Any]) -> dict[str, Any]:
    """Chatwoot's contact record, plus whether its identifier was proven (identifier_hash):
    what the console's contact panel shows as a verified identity."""
    return {
        **views.contact_record(contact),
        "identifier_verified": bool(contact["identifier_verified"]),
    }


async def show(request: web.Request) -> web.Response:
    who = await auth.agent(request)
    contact = await _visible(request, who)
    return json_response({"payload": _record(contact)})


def changes(body: dict[str, Any]) -> dict[str, Any]:
    """The fields sent (flat, or under `contact` as Chatwoot's clients send them), checked:
    a name of at most 255 characters, a plausible email, an E.164 phone number; "" or null
    clears the email or the phone number."""
    if isinstance(body.get("contact"), dict):
        body = body["contact"]
    out: dict[str, Any] = {}
    if "name" in body:
        name = (opt_str(body, "name", max_len=MAX_NAME) or "").strip()
        out["name"] = name
    if "email" in body:
        raw = opt_str(body, "email", max_len=320)
        out["email"] = email_address(raw, "email") if raw and raw.strip() else None
    if "phone_number" in body:
        raw = (opt_str(body, "phone_number", max_len=32) or "").strip()
        if raw and not PHONE.fullmatch(raw):
            raise unprocessable("phone_number must be in E.164 format, e.g. +14155552671")
        out["phone_number"] = raw or None
    if not out:
        raise bad_request("nothing to change: send name, email or phone_number")
    return out


async def update(request: web.Request) -> web.Response:
    """Edits the contact's name, email and phone number; contact.updated to the account's
    agents when something changed."""
    svc = services(request)
    who = await auth.agent(request)
    contact_id = auth.path_id(request, "contact_id")
    edit = ContactEdit(
        who.account_id, tuple(who.inbox_ids), contact_id, changes(await json_body(request))
    )
    contact = await svc.store.edit_contact(edit)
    if contact is None:
        raise not_found()
    return json_response({"payload": _record(contact)})


async def conversations_of(request: web.Request) -> web.Response:
    """The contact's conversations in the caller's inboxes, latest activity first (the
    newest 25): what the contact panel lists as earlier conversations."""
    svc = services(request)
    who = await auth.agent(request)
    contact = await _visible(request, who)

    async def read(conn: Any) -> list[dict[str, Any]]:
        rows = await conversations_store.list_for_inboxes(
            conn,
            who.account_id,
            who.inbox_ids,
            conversations_store.ListFilter(
                who.user["id"], search=conversations.c.contact_id == contact["id"]
            ),
            page=1,
            per_page=CONVERSATIONS_SHOWN,
        )
        return await payloads.conversations(conn, rows)

    return json_response({"payload": await svc.db.read(read)})
