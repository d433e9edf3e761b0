"""Who a visitor is, and the only ways that can change (contract §1.2, §2.7, §2.8).

The identity rules. Every path that sets an identifier (`PATCH /contact`, `PATCH
/contact/set_user`) goes through `prove` and `claim`:

1. A visitor is the contact behind their token. A contact JWT names one contact_inbox (its
   `source_id`), and nothing in this server ever moves a contact_inbox or a conversation to
   another contact: contacts never merge. So a token reaches exactly the contact it was
   issued for, for as long as it lives, whatever anyone claims later.
2. An identifier comes with proof (`identifier_hash` = HMAC-SHA256 of the identifier keyed
   with the inbox's `hmac_token`, hex) or without. A hash that does not match is refused
   (401), and so is an identifier without one when the inbox has `hmac_mandatory`.
3. An identifier without proof is a label on the caller's own contact, nothing more: it is
   written there when the contact has no identifier yet (or has this one); a contact that
   already has another identifier makes the caller a new contact carrying the new label
   (Chatwoot's switch). It never finds, reaches or changes any other contact, and it never
   makes a contact verified.
4. A proven identifier X:
   a. the caller's contact is the verified contact of X: it stays;
   b. the account has a verified contact of X: the caller switches to it (its
      contact_inbox in this inbox, made if missing) with a new token; the caller's old
      contact keeps its conversations and its old tokens, and gains nothing;
   c. the caller's contact is anonymous (no identifier at all): it becomes the verified
      contact of X, so the visitor's pre-login conversation stays with them;
   d. otherwise (another identifier, or X claimed without proof): a new verified contact
      of X, with a new token.
   So a verified identity never lands in, merges into or inherits a contact whose
   identifier was not proven.
5. At most one verified contact per identifier and account (a unique index): two visitors
   proving X at once end in the same contact (the loser's write fails and is retried).
6. The profile fields sent along (name, email, attributes) are written to the contact the
   caller ends up as, after the rules above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server.auth import decode_contact_token, identifier_hash_matches, mint_contact_token
from server.client_address import client_address
from server.errors import unauthorized
from server.ratelimit import address_subject
from server.services import Services
from server.store import contacts as contacts_store

HMAC_FAILED = "HMAC failed: Invalid Identifier Hash Provided"


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
    address = client_address(request, svc.settings.trusted_proxies)
    await svc.limiter.check("contacts_per_address", address_subject(address))
    contact, ci = await svc.db.write(
        contacts_store.create_identity,
        account_id=inbox["account_id"],
        inbox_id=inbox["id"],
        additional_attributes={"created_at_ip": address} if address else {},
    )
    return contact, ci, mint(svc, inbox, ci), False


def mint(svc: Services, inbox: dict[str, Any], ci: dict[str, Any]) -> str:
    return mint_contact_token(
        svc.settings.secret_key_base,
        source_id=ci["source_id"],
        inbox_id=inbox["id"],
        expiry_days=svc.settings.widget_token_expiry_days,
    )


def prove(inbox: dict[str, Any], identifier: str | None, given_hash: str | None) -> bool:
    """Rule 2: True when the identifier is proven, False when it comes without proof and the
    inbox allows that; 401 otherwise. No identifier and no hash proves nothing."""
    if given_hash is None:
        if identifier is not None and inbox["hmac_mandatory"]:
            raise unauthorized(HMAC_FAILED)
        return False
    if identifier is None or not identifier_hash_matches(
        inbox["hmac_token"], identifier, given_hash
    ):
        raise unauthorized(HMAC_FAILED)
    return True


@dataclass
class Identity:
    """Where a claim leaves the caller. `switched`: a contact_inbox other than the one the
    caller's token names, so the caller needs a new token for it."""

    contact: dict[str, Any]
    contact_inbox: dict[str, Any]
    switched: bool


def may_create_contact(contact: dict[str, Any], identifier: str, verified: bool) -> bool:
    """Whether `claim` can end in a new contact (rules 3 and 4d): what the per-address
    budget of new contacts is spent on, before the write."""
    own = contact["identifier"]
    if own is None:
        return False
    return own != identifier or (verified and not contact["identifier_verified"])


async def claim(
    conn: AsyncConnection,
    *,
    inbox: dict[str, Any],
    contact: dict[str, Any],
    contact_inbox: dict[str, Any],
    identifier: str,
    verified: bool,
) -> Identity:
    """Rules 3 and 4, inside the caller's write transaction."""
    own = contact["identifier"]
    if not verified:
        if own is None or own == identifier:
            if own is None:
                contact = await contacts_store.update_contact(
                    conn, contact["id"], {"identifier": identifier}
                )
            return Identity(contact, contact_inbox, switched=False)
        return await _new_contact(conn, inbox, identifier, verified=False)

    if own == identifier and contact["identifier_verified"]:
        await contacts_store.set_hmac_verified(conn, contact_inbox["id"])  # rule 4a
        return Identity(contact, contact_inbox, switched=False)
    owner = await contacts_store.verified_owner(conn, inbox["account_id"], identifier)
    if owner is not None:  # rule 4b
        ci = await contacts_store.verified_contact_inbox(conn, owner["id"], inbox["id"])
        if ci is None:
            ci = await contacts_store.attach(
                conn, contact_id=owner["id"], inbox_id=inbox["id"], hmac_verified=True
            )
        return Identity(owner, ci, switched=True)
    if own is None:  # rule 4c
        contact = await contacts_store.update_contact(
            conn, contact["id"], {"identifier": identifier, "identifier_verified": True}
        )
        await contacts_store.set_hmac_verified(conn, contact_inbox["id"])
        return Identity(contact, contact_inbox, switched=False)
    return await _new_contact(conn, inbox, identifier, verified=True)  # rule 4d


async def _new_contact(
    conn: AsyncConnection, inbox: dict[str, Any], identifier: str, *, verified: bool
) -> Identity:
    contact, ci = await contacts_store.create_identity(
        conn,
        account_id=inbox["account_id"],
        inbox_id=inbox["id"],
        identifier=identifier,
        identifier_verified=verified,
        hmac_verified=verified,
    )
    return Identity(contact, ci, switched=True)
