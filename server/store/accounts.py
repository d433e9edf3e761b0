"""Accounts, their agents (users) and website inboxes: created by admin commands, read by
every request."""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.auth import new_token
from server.store import all_rows, one
from server.store.tables import account_users, accounts, inbox_members, inboxes, users


async def create_account(conn: AsyncConnection, name: str) -> dict[str, Any]:
    result = await conn.execute(
        insert(accounts)
        .values(name=name, status="active", conversation_seq=0, created_at=time.time())
        .returning(*accounts.c)
    )
    return one(result)  # type: ignore[return-value]


async def get_account(conn: AsyncConnection, account_id: int) -> dict[str, Any] | None:
    return one(await conn.execute(select(accounts).where(accounts.c.id == account_id)))


async def next_display_id(conn: AsyncConnection, account_id: int) -> int:
    """The account's next conversation number; the UPDATE also serializes concurrent callers."""
    result = await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(conversation_seq=accounts.c.conversation_seq + 1)
        .returning(accounts.c.conversation_seq)
    )
    return int(result.scalar_one())


VOICE_COLUMNS = ("elevenlabs_agent_id", "elevenlabs_api_key", "elevenlabs_webhook_secret")


async def create_inbox(
    conn: AsyncConnection,
    *,
    account_id: int,
    name: str,
    website_url: str | None = None,
    end_conversation: bool = False,
    hmac_mandatory: bool = False,
    **voice: str | None,
) -> dict[str, Any]:
    """`voice`: the ElevenLabs settings (VOICE_COLUMNS), each None when absent."""
    unknown = set(voice) - set(VOICE_COLUMNS)
    assert not unknown, f"not a voice setting: {unknown}"
    result = await conn.execute(
        insert(inboxes)
        .values(
            account_id=account_id,
            name=name,
            website_url=website_url,
            website_token=new_token(24),
            hmac_token=new_token(24),
            hmac_mandatory=hmac_mandatory,
            end_conversation=end_conversation,
            welcome_title="Hi there!",
            welcome_tagline="We make it simple to connect with us.",
            widget_color="#1f93ff",
            **{name: voice.get(name) for name in VOICE_COLUMNS},
            created_at=time.time(),
        )
        .returning(*inboxes.c)
    )
    return one(result)  # type: ignore[return-value]


async def set_attachments(conn: AsyncConnection, inbox_id: int, enabled: bool) -> dict[str, Any]:
    """Whether the inbox's visitors may send files (the widget's `attachments` feature)."""
    result = await conn.execute(
        update(inboxes)
        .where(inboxes.c.id == inbox_id)
        .values(attachments_enabled=enabled)
        .returning(*inboxes.c)
    )
    return one(result)  # type: ignore[return-value]


async def inbox_by_website_token(conn: AsyncConnection, token: str) -> dict[str, Any] | None:
    """The inbox and its account's status, in one query."""
    result = await conn.execute(
        select(
            inboxes,
            accounts.c.status.label("account_status"),
            accounts.c.name.label("account_name"),
        )
        .join(accounts, accounts.c.id == inboxes.c.account_id)
        .where(inboxes.c.website_token == token)
    )
    return one(result)


async def create_agent(
    conn: AsyncConnection,
    *,
    account_id: int,
    name: str,
    email: str,
    inbox_ids: list[int],
    administrator: bool = False,
) -> dict[str, Any]:
    result = await conn.execute(
        insert(users)
        .values(
            name=name,
            email=email.lower(),
            access_token=secrets.token_urlsafe(24),
            pubsub_token=new_token(24),
            availability="online",
            avatar_url="",
            created_at=time.time(),
        )
        .returning(*users.c)
    )
    user: dict[str, Any] = one(result)  # type: ignore[assignment]
    await conn.execute(
        insert(account_users).values(
            account_id=account_id,
            user_id=user["id"],
            role="administrator" if administrator else "agent",
        )
    )
    for inbox_id in inbox_ids:
        await conn.execute(insert(inbox_members).values(inbox_id=inbox_id, user_id=user["id"]))
    user["role"] = "administrator" if administrator else "agent"
    user["account_id"] = account_id
    return user


async def inboxes_of_account(conn: AsyncConnection, account_id: int) -> list[dict[str, Any]]:
    return all_rows(
        await conn.execute(
            select(inboxes).where(inboxes.c.account_id == account_id).order_by(inboxes.c.id)
        )
    )


async def inbox_agents(conn: AsyncConnection, inbox: dict[str, Any]) -> list[dict[str, Any]]:
    """Inbox members and the account's administrators: who answers this inbox."""
    members = select(inbox_members.c.user_id).where(inbox_members.c.inbox_id == inbox["id"])
    admins = select(account_users.c.user_id).where(
        account_users.c.account_id == inbox["account_id"],
        account_users.c.role == "administrator",
    )
    result = await conn.execute(
        select(users, (users.c.id.in_(members)).label("is_member"))
        .where(or_(users.c.id.in_(members), users.c.id.in_(admins)))
        .order_by(users.c.id)
    )
    return all_rows(result)


async def user_by_access_token(conn: AsyncConnection, token: str) -> dict[str, Any] | None:
    return one(await conn.execute(select(users).where(users.c.access_token == token)))


async def user_by_pubsub_token(
    conn: AsyncConnection, token: str, user_id: int
) -> dict[str, Any] | None:
    return one(
        await conn.execute(
            select(users).where(users.c.pubsub_token == token, users.c.id == user_id)
        )
    )


async def user_by_email(conn: AsyncConnection, email: str) -> dict[str, Any] | None:
    return one(await conn.execute(select(users).where(users.c.email == email.lower())))


async def get_user(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
    return one(await conn.execute(select(users).where(users.c.id == user_id)))


async def users_by_id(conn: AsyncConnection, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = all_rows(await conn.execute(select(users).where(users.c.id.in_(ids))))
    return {row["id"]: row for row in rows}


async def availability_of_agents(conn: AsyncConnection, account_id: int) -> dict[int, str]:
    """Each agent of the account, by id: the availability they chose (presence.update)."""
    rows = await conn.execute(
        select(users.c.id, users.c.availability)
        .join(account_users, account_users.c.user_id == users.c.id)
        .where(account_users.c.account_id == account_id)
    )
    return {row.id: row.availability for row in rows}


async def memberships(conn: AsyncConnection, user_id: int) -> list[dict[str, Any]]:
    """The accounts a user belongs to, with the role in each."""
    return all_rows(
        await conn.execute(
            select(account_users.c.account_id, account_users.c.role, accounts.c.name)
            .join(accounts, accounts.c.id == account_users.c.account_id)
            .where(account_users.c.user_id == user_id)
            .order_by(account_users.c.account_id)
        )
    )


async def visible_inbox_ids(
    conn: AsyncConnection, user_id: int, account_id: int, role: str
) -> list[int]:
    """Administrators see every inbox of the account; agents the inboxes they belong to."""
    if role == "administrator":
        query = select(inboxes.c.id).where(inboxes.c.account_id == account_id)
    else:
        query = (
            select(inboxes.c.id)
            .join(inbox_members, inbox_members.c.inbox_id == inboxes.c.id)
            .where(inboxes.c.account_id == account_id, inbox_members.c.user_id == user_id)
        )
    return [row[0] for row in await conn.execute(query.order_by(inboxes.c.id))]


async def is_empty(conn: AsyncConnection) -> bool:
    return (await conn.execute(select(accounts.c.id).limit(1))).first() is None


async def first_inbox_token(conn: AsyncConnection) -> str | None:
    """The website_token of the first inbox created (the demo's: the one SEED_DEMO makes)."""
    row = (
        await conn.execute(select(inboxes.c.website_token).order_by(inboxes.c.id).limit(1))
    ).first()
    return None if row is None else str(row[0])


async def membership(conn: AsyncConnection, user_id: int, account_id: int) -> dict[str, Any] | None:
    """The user's role in one account, with the account's name and status; None when the
    user does not belong to it (the agent API's account scoping)."""
    return one(
        await conn.execute(
            select(account_users.c.role, accounts.c.name, accounts.c.status)
            .join(accounts, accounts.c.id == account_users.c.account_id)
            .where(account_users.c.user_id == user_id, account_users.c.account_id == account_id)
        )
    )


async def list_accounts(conn: AsyncConnection) -> list[dict[str, Any]]:
    return all_rows(
        await conn.execute(
            select(accounts.c.id, accounts.c.name, accounts.c.status).order_by(accounts.c.id)
        )
    )


async def agents_of_account(conn: AsyncConnection, account_id: int) -> list[dict[str, Any]]:
    """The account's agents with their role (no tokens)."""
    return all_rows(
        await conn.execute(
            select(users.c.id, users.c.name, users.c.email, account_users.c.role)
            .join(account_users, account_users.c.user_id == users.c.id)
            .where(account_users.c.account_id == account_id)
            .order_by(users.c.id)
        )
    )


async def rotate_user_tokens(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
    """New access and pubsub tokens: the old ones stop working with this commit (nothing
    caches agent tokens)."""
    return one(
        await conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(access_token=secrets.token_urlsafe(24), pubsub_token=new_token(24))
            .returning(*users.c)
        )
    )


async def rotate_hmac_token(conn: AsyncConnection, inbox_id: int) -> dict[str, Any] | None:
    return one(
        await conn.execute(
            update(inboxes)
            .where(inboxes.c.id == inbox_id)
            .values(hmac_token=new_token(24))
            .returning(*inboxes.c)
        )
    )


async def update_inbox(
    conn: AsyncConnection, inbox_id: int, changes: dict[str, Any]
) -> dict[str, Any] | None:
    """The inbox with `changes` (columns of `inboxes`) applied; None: no such inbox."""
    return one(
        await conn.execute(
            update(inboxes).where(inboxes.c.id == inbox_id).values(**changes).returning(*inboxes.c)
        )
    )


async def remove_memberships(conn: AsyncConnection, user_id: int) -> None:
    """The user leaves every account and inbox: they reach nothing any more."""
    await conn.execute(delete(inbox_members).where(inbox_members.c.user_id == user_id))
    await conn.execute(delete(account_users).where(account_users.c.user_id == user_id))


async def set_csat_survey(conn: AsyncConnection, inbox_id: int, enabled: bool) -> dict[str, Any]:
    """The inbox with its CSAT setting (resolving a conversation sends the survey)."""
    row = one(
        await conn.execute(
            update(inboxes)
            .where(inboxes.c.id == inbox_id)
            .values(csat_survey_enabled=enabled)
            .returning(*inboxes.c)
        )
    )
    assert row is not None, f"inbox {inbox_id} vanished"
    return row
