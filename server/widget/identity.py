"""Handing a visitor their identity: reuse the contact behind a valid token, else create an
anonymous one, and mint the contact JWT (contract §1.2, §2.8)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.auth import decode_contact_token, mint_contact_token
from server.client_address import client_address
from server.ratelimit import address_subject
from server.services import Services
from server.store import contacts as contacts_store


async def identify(
    svc: Services, request: web.Request, inbox: dict[str, Any], token: str | None
) -> tuple[dict[str, Any], dict[str, Any], str, bool]:
    """(contact, contact_inbox, jwt, reused). A bad or expired token is not an error here:
    the visitor simply gets a new identity, within the client address's budget of new
    contacts (a 429 past it; reusing a valid token costs nothing)."""
    claims = decode_contact_token(svc.settings.secret_key_base, token)
    if claims is not None and claims["inbox_id"] == inbox["id"]:
        found = await svc.db.read(contacts_store.find_identity, inbox["id"], claims["source_id"])
        if found is not None:
            contact, ci = found
            return contact, ci, token, True  # type: ignore[return-value]
    address = address_subject(client_address(request, svc.settings.trusted_proxies))
    await svc.limiter.check("contacts_per_address", address)
    contact, ci = await svc.db.write(
        contacts_store.create_identity,
        account_id=inbox["account_id"],
        inbox_id=inbox["id"],
        additional_attributes={"created_at_ip": request.remote} if request.remote else {},
    )
    return contact, ci, mint(svc, inbox, ci), False


def mint(svc: Services, inbox: dict[str, Any], ci: dict[str, Any]) -> str:
    return mint_contact_token(
        svc.settings.secret_key_base,
        source_id=ci["source_id"],
        inbox_id=inbox["id"],
        expiry_days=svc.settings.widget_token_expiry_days,
    )
