"""/api/v1/widget/contact: the visitor's own contact record and set_user (contract §2.7).
Who the visitor may become by naming an identifier is decided in server/widget/identity.py."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server import views
from server.attributes import merged_attributes
from server.client_address import client_address
from server.errors import json_response, unprocessable
from server.params import attributes, json_body, key_list, opt_str
from server.ratelimit import address_subject
from server.services import services
from server.store import contacts as contacts_store
from server.store.db import is_unique_violation
from server.store.inputs import ContactAttributeRemoval
from server.widget import context, identity
from server.widget.identity import Identity


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


def _profile(body: dict[str, Any]) -> dict[str, Any]:
    """The profile fields of a request, validated; attribute maps as sent (merged later into
    whichever contact the caller ends up as)."""
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
        value = attributes(body, key, max_bytes=None)  # capped once merged: _merged
        if value is not None:
            changes[key] = value
    return changes


def _merged(profile: dict[str, Any], contact: dict[str, Any], limit: int) -> dict[str, Any]:
    """The profile as column values for `contact`: attribute maps merged into its own, and
    refused (422, inside the write, so nothing is written) past MAX_ATTRIBUTES_BYTES."""
    return {
        key: (
            merged_attributes(profile, key, contact[key], limit)
            if key.endswith("_attributes")
            else value
        )
        for key, value in profile.items()
    }


async def _identify(request: web.Request, *, set_user: bool) -> web.Response:
    """Both endpoints: prove and claim the identifier (if any), then write the profile to
    the contact the caller ends up as, in one transaction."""
    svc = services(request)
    visitor = await context.visitor(request)
    body = await json_body(request)
    identifier = opt_str(body, "identifier", max_len=255)
    if identifier is not None and not identifier.strip():
        if set_user:
            raise unprocessable("identifier can't be blank")
        identifier = None
    verified = identity.prove(
        visitor.inbox, identifier, opt_str(body, "identifier_hash", max_len=256)
    )
    profile = _profile(body)
    if identifier is not None and identity.may_create_contact(
        visitor.contact, identifier, verified
    ):  # the same budget as /config, per client address
        address = address_subject(client_address(request, svc.settings.trusted_proxies))
        await svc.limiter.check("contacts_per_address", address)

    async def op(conn: AsyncConnection) -> Identity:
        who = Identity(visitor.contact, visitor.contact_inbox, switched=False)
        if identifier is not None:
            who = await identity.claim(
                conn,
                inbox=visitor.inbox,
                contact=visitor.contact,
                contact_inbox=visitor.contact_inbox,
                identifier=identifier,
                verified=verified,
            )
        if profile:
            who.contact = await contacts_store.update_contact(
                conn,
                who.contact["id"],
                _merged(profile, who.contact, svc.settings.max_attributes_bytes),
            )
        return who

    try:
        who = await svc.db.write(op)
    except Exception as exc:
        if not is_unique_violation(exc):
            raise
        who = await svc.db.write(op)  # rule 5: another visitor proved it first; join them
    out = summary(who.contact)
    if who.switched:
        out["widget_auth_token"] = identity.mint(svc, visitor.inbox, who.contact_inbox)
    return json_response(out)


async def update(request: web.Request) -> web.Response:
    return await _identify(request, set_user=False)


async def set_user(request: web.Request) -> web.Response:
    return await _identify(request, set_user=True)


async def destroy_custom_attributes(request: web.Request) -> web.Response:
    """`$chatwoot.deleteCustomAttribute`: drops the keys, answers the full Contact record (as
    Chatwoot's `render json: @contact`); agents hear contact.updated when a key was there."""
    svc = services(request)
    visitor = await context.visitor(request)
    keys = key_list(await json_body(request), "custom_attributes")
    contact = await svc.store.remove_contact_attributes(
        ContactAttributeRemoval(visitor, tuple(keys))
    )
    return json_response(views.contact_record(contact))
