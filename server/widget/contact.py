"""/api/v1/widget/contact: the visitor's own contact record and set_user (contract §2.7)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server.attributes import merged_attributes
from server.auth import identifier_hash_matches
from server.errors import json_response, unauthorized, unprocessable
from server.params import json_body, opt_str
from server.services import services
from server.store import contacts as contacts_store
from server.widget import context
from server.widget.identity import mint

HMAC_FAILED = "HMAC failed: Invalid Identifier Hash Provided"


def summary(contact: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": contact["id"],
        "has_email": bool(contact["email"]),
        "has_name": bool(contact["name"]),
        "has_phone_number": bool(contact["phone_number"]),
    }


async def show(request: web.Request) -> web.Response:
    visitor = await context.visitor(request)
    return json_response({**summary(visitor.contact), "identifier": visitor.contact["identifier"]})


def _changes(body: dict[str, Any], contact: dict[str, Any], attrs_limit: int) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    email = opt_str(body, "email", max_len=320)
    if email is not None:
        email = email.strip().lower()
        if email and ("@" not in email or email.startswith("@") or email.endswith("@")):
            raise unprocessable("email is not a valid email address")
        changes["email"] = email or None
    for key, max_len in (("name", 255), ("phone_number", 32), ("avatar_url", 2048)):
        value = opt_str(body, key, max_len=max_len)
        if value is not None:
            changes[key] = value.strip() if key != "avatar_url" else value
    if changes.get("phone_number") == "":
        changes["phone_number"] = None
    for key in ("custom_attributes", "additional_attributes"):
        value = merged_attributes(body, key, contact[key], attrs_limit)
        if value is not None:
            changes[key] = value
    return changes


def _verified(body: dict[str, Any], inbox: dict[str, Any], identifier: str | None) -> bool:
    """HMAC check: required when a hash is given or the inbox makes it mandatory."""
    given = opt_str(body, "identifier_hash", max_len=256)
    if given is None and not inbox["hmac_mandatory"]:
        return False
    if given is None or identifier is None:
        raise unauthorized(HMAC_FAILED)
    if not identifier_hash_matches(inbox["hmac_token"], identifier, given):
        raise unauthorized(HMAC_FAILED)
    return True


async def update(request: web.Request) -> web.Response:
    svc = services(request)
    visitor = await context.visitor(request)
    body = await json_body(request)
    changes = _changes(body, visitor.contact, svc.settings.max_attributes_bytes)
    identifier = opt_str(body, "identifier", max_len=255)
    verified = False
    if identifier is not None:
        verified = _verified(body, visitor.inbox, identifier)
        changes["identifier"] = identifier

    async def op(conn: AsyncConnection) -> dict[str, Any]:
        contact = visitor.contact
        if changes:
            contact = await contacts_store.update_contact(conn, contact["id"], changes)
        if identifier is not None and verified:
            await contacts_store.set_hmac_verified(conn, visitor.contact_inbox["id"])
        return contact

    contact = await svc.db.write(op)
    return json_response(summary(contact))


async def set_user(request: web.Request) -> web.Response:
    """Identify the visitor as a user of the site. A verified identifier already known in
    the account switches the visitor to that contact (their history follows them); an
    unverified one is only recorded on the current contact, never merged, so nobody can
    read another user's conversations by claiming their identifier."""
    svc = services(request)
    visitor = await context.visitor(request)
    body = await json_body(request)
    identifier = opt_str(body, "identifier", max_len=255)
    if identifier is not None and not identifier.strip():
        raise unprocessable("identifier can't be blank")
    verified = _verified(body, visitor.inbox, identifier)
    changes = _changes(body, visitor.contact, svc.settings.max_attributes_bytes)
    inbox = visitor.inbox

    async def op(conn: AsyncConnection) -> tuple[dict[str, Any], dict[str, Any] | None]:
        contact, ci = visitor.contact, visitor.contact_inbox
        new_ci = None
        if identifier is not None and identifier != contact["identifier"]:
            owner = await contacts_store.find_by_identifier(conn, inbox["account_id"], identifier)
            if verified and owner is not None:
                contact = owner
                new_ci = await contacts_store.contact_inbox_for(conn, owner["id"], inbox["id"])
                if new_ci is None:
                    new_ci = await contacts_store.attach(
                        conn, contact_id=owner["id"], inbox_id=inbox["id"], hmac_verified=True
                    )
            elif contact["identifier"]:
                # Already someone else: a new visitor identity, as Chatwoot does.
                contact, new_ci = await contacts_store.create_identity(
                    conn,
                    account_id=inbox["account_id"],
                    inbox_id=inbox["id"],
                    identifier=identifier,
                    hmac_verified=verified,
                )
            else:
                changes["identifier"] = identifier
        if changes:
            contact = await contacts_store.update_contact(conn, contact["id"], changes)
        target = new_ci or ci
        if verified:
            await contacts_store.set_hmac_verified(conn, target["id"])
        return contact, new_ci

    contact, new_ci = await svc.db.write(op)
    out = summary(contact)
    if new_ci is not None:
        out["widget_auth_token"] = mint(svc, inbox, new_ci)
    return json_response(out)
