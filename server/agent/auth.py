"""Who is calling the agent API, and what they may see (contract §6).

The caller is identified by its access token, sent as the `api_access_token` header (or, for
convenience with curl and browsers, the `api_access_token` query parameter). The rules, in the
order they are checked:

- no token, or a token no user has: 401 `{"error": "Invalid Access Token"}`;
- a non-integer `account_id` or conversation id in the path: 404 `Resource could not be found`
  (like Rails' `find` on a malformed id);
- an account the user does not belong to (existing or not, so ids cannot be probed):
  401 `{"error": "You are not authorized to access this account"}`, as Chatwoot answers;
- a suspended account: 401 `{"error": "Account is suspended"}`;
- a conversation outside the caller's visible inboxes, or of another account: 404
  `Resource could not be found`, the same answer as for one that does not exist.

Visible inboxes: an administrator (`account_users.role == "administrator"`) sees every inbox of
the account; an agent sees the inboxes it is a member of. Every conversation query below is
scoped by account id and by these inbox ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import ApiError, not_found, unauthorized
from server.services import services
from server.store import accounts as accounts_store
from server.store import conversations as conversations_store
from server.store.inputs import AgentsConversation

TOKEN = "api_access_token"
MAX_TOKEN_LENGTH = 256
MAX_ID = 2**62

INVALID_TOKEN = "Invalid Access Token"
NOT_A_MEMBER = "You are not authorized to access this account"


@dataclass
class Agent:
    """The authenticated user, in one account: role and the inboxes it may see."""

    user: dict[str, Any]
    account_id: int
    role: str
    inbox_ids: list[int] = field(default_factory=list)

    @property
    def is_admin(self) -> bool:
        return self.role == "administrator"

    def names(self, display_id: int) -> AgentsConversation:
        """The conversation `display_id`, as this agent may reach it."""
        return AgentsConversation(self.account_id, tuple(self.inbox_ids), display_id)


def access_token(request: web.Request) -> str | None:
    token = request.headers.get(TOKEN) or request.query.get(TOKEN)
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    if not token.isascii() or not token.isprintable():
        # Header bytes that are not UTF-8 arrive as lone surrogates: the database driver
        # cannot encode them (a 500). Our tokens are URL-safe ASCII.
        return None
    return token


def path_id(request: web.Request, name: str) -> int:
    """An integer id from the path; anything else is a 404, never a 500 from the database."""
    raw = request.match_info.get(name, "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) >= MAX_ID:
        raise not_found()
    return int(raw)


async def user(request: web.Request) -> dict[str, Any]:
    """The user behind the access token, or 401."""
    token = access_token(request)
    if token is None:
        raise unauthorized(INVALID_TOKEN)
    found = await services(request).db.read(accounts_store.user_by_access_token, token)
    if found is None:
        raise unauthorized(INVALID_TOKEN)
    return found


async def _agent_in(conn: AsyncConnection, token: str, account_id: int) -> Agent | str:
    """One read for the whole check: the user, its membership, its visible inboxes."""
    found = await accounts_store.user_by_access_token(conn, token)
    if found is None:
        return INVALID_TOKEN
    member = await accounts_store.membership(conn, found["id"], account_id)
    if member is None:
        return NOT_A_MEMBER
    if member["status"] != "active":
        return "Account is suspended"
    inbox_ids = await accounts_store.visible_inbox_ids(
        conn, found["id"], account_id, member["role"]
    )
    return Agent(user=found, account_id=account_id, role=member["role"], inbox_ids=inbox_ids)


async def agent(request: web.Request) -> Agent:
    """The caller as a member of the path's account, or 401/404 (see the module docstring)."""
    token = access_token(request)
    if token is None:
        raise unauthorized(INVALID_TOKEN)
    try:
        account_id = path_id(request, "account_id")
    except ApiError:
        await user(request)  # a bad token is a 401 whatever the path says
        raise
    found = await services(request).db.read(_agent_in, token, account_id)
    if isinstance(found, str):
        raise unauthorized(found)
    return found


async def find_conversation(
    conn: AsyncConnection, who: Agent, display_id: int
) -> dict[str, Any] | None:
    """The conversation, if it is in the caller's account and visible inboxes."""
    return await conversations_store.visible_to_agent(
        conn, who.account_id, who.inbox_ids, display_id
    )


async def conversation(request: web.Request, who: Agent) -> dict[str, Any]:
    """The path's conversation (by display id) as the caller may see it, or 404."""
    display_id = path_id(request, "display_id")
    conv = await services(request).db.read(find_conversation, who, display_id)
    if conv is None:
        raise not_found()
    return conv
