"""GET /api/v1/profile: who the access token belongs to, and where it may act (contract §6)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.agent import auth
from server.errors import json_response
from server.services import services
from server.store import accounts as accounts_store


def profile_record(user: dict[str, Any], accounts: list[dict[str, Any]]) -> dict[str, Any]:
    """Chatwoot's profile JSON. `account_id` and `role` are those of the first account, as
    Chatwoot's default account. The access token is returned only to its own owner, which
    is how consoles and bots learn it in Chatwoot too."""
    first = accounts[0] if accounts else None
    return {
        "id": user["id"],
        "name": user["name"],
        "display_name": user["name"],
        "available_name": user["name"],
        "email": user["email"],
        "uid": user["email"],
        "avatar_url": user["avatar_url"] or "",
        "thumbnail": user["avatar_url"] or "",
        "type": "user",
        "access_token": user["access_token"],
        "pubsub_token": user["pubsub_token"],
        "account_id": first["account_id"] if first else None,
        "role": first["role"] if first else None,
        "availability_status": user["availability"],
        "availability": user["availability"],
        "accounts": [
            {
                "id": a["account_id"],
                "name": a["name"],
                "role": a["role"],
                "availability": user["availability"],
                "availability_status": user["availability"],
            }
            for a in accounts
        ],
    }


async def show(request: web.Request) -> web.Response:
    who = await auth.user(request)
    accounts = await services(request).db.read(accounts_store.memberships, who["id"])
    return json_response(profile_record(who, accounts))
