"""Admin commands (`python -m server admin ...`) and the demo data of a first start.

Each command prints one JSON object on stdout, so scripts can read what was created."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server import labels, views
from server.errors import ApiError
from server.jsonutil import dumps
from server.settings import Settings
from server.store import accounts as accounts_store
from server.store import label_writes
from server.store.db import Database, is_unique_violation
from server.store.engine import engine_for
from server.store.inputs import NewLabel
from server.store.migrate import SchemaNotCurrent

log = logging.getLogger(__name__)


def inbox_json(inbox: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": inbox["id"],
        "account_id": inbox["account_id"],
        "name": inbox["name"],
        "website_url": inbox["website_url"],
        "website_token": inbox["website_token"],
        "hmac_token": inbox["hmac_token"],
        "end_conversation": bool(inbox["end_conversation"]),
        "hmac_mandatory": bool(inbox["hmac_mandatory"]),
        "elevenlabs_agent_id": inbox["elevenlabs_agent_id"],
        "elevenlabs_api_key_set": bool(inbox["elevenlabs_api_key"]),
        "attachments_enabled": bool(inbox["attachments_enabled"]),
        "csat_survey_enabled": bool(inbox["csat_survey_enabled"]),
        "elevenlabs_webhook_secret_set": bool(inbox["elevenlabs_webhook_secret"]),
    }


def agent_json(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "account_id": user["account_id"],
        "name": user["name"],
        "email": user["email"],
        "role": user["role"],
        "access_token": user["access_token"],
        "pubsub_token": user["pubsub_token"],
    }


async def seed_demo(db: Database) -> dict[str, Any] | None:
    """On an empty database: a demo account, website inbox and administrator agent."""

    engine = engine_for(db)

    async def op(conn: AsyncConnection) -> dict[str, Any] | None:
        await engine.serialize_seeding(conn)
        if not await accounts_store.is_empty(conn):
            return None
        account = await accounts_store.create_account(conn, "Demo")
        inbox = await accounts_store.create_inbox(
            conn, account_id=account["id"], name="Demo website", end_conversation=True
        )
        agent = await accounts_store.create_agent(
            conn,
            account_id=account["id"],
            name="Demo Agent",
            email="agent@demo.local",
            inbox_ids=[inbox["id"]],
            administrator=True,
        )
        return {"account_id": account["id"], "inbox": inbox_json(inbox), "agent": agent_json(agent)}

    seeded = await db.write(op)
    if seeded:
        log.info(
            "created demo data: account %s; website_token=%s; agent access_token=%s",
            seeded["account_id"],
            seeded["inbox"]["website_token"],
            seeded["agent"]["access_token"],
        )
    return seeded


def parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser("admin", help="create, list and rotate accounts, inboxes and agents")
    cmds = admin.add_subparsers(dest="command", required=True)
    p = cmds.add_parser("create-account")
    p.add_argument("--name", required=True)
    p = cmds.add_parser("create-inbox")
    p.add_argument("--account", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--website-url")
    p.add_argument("--end-conversation", action="store_true")
    p.add_argument(
        "--hmac-mandatory",
        action="store_true",
        help="refuse (401) any visitor identifier that comes without a valid identifier_hash",
    )
    p.add_argument("--elevenlabs-agent-id")
    p.add_argument("--elevenlabs-api-key")
    p.add_argument(
        "--elevenlabs-webhook-secret",
        help="the secret of ElevenLabs' post-call webhook (POST /webhooks/elevenlabs)",
    )
    p.add_argument(
        "--no-attachments",
        action="store_true",
        help="visitors of this inbox cannot send files (the widget hides its file button)",
    )
    p.add_argument(
        "--csat-survey",
        action="store_true",
        help="resolving a conversation sends the visitor the CSAT survey",
    )
    p = cmds.add_parser("create-label")
    p.add_argument("--account", type=int, required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--color", default="")
    p = cmds.add_parser("create-agent")
    p.add_argument("--account", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--inbox", type=int, action="append", default=[])
    p.add_argument("--administrator", action="store_true")
    cmds.add_parser("list-accounts")
    for name in ("list-inboxes", "list-agents"):
        cmds.add_parser(name).add_argument("--account", type=int, required=True)
    for name in ("rotate-agent-token", "deactivate-agent"):
        cmds.add_parser(name).add_argument("--agent", type=int, required=True)
    cmds.add_parser("rotate-hmac-token").add_argument("--inbox", type=int, required=True)
    p = cmds.add_parser(
        "set-inbox-voice",
        help="set or clear (an empty value) an inbox's ElevenLabs settings; the others stay",
    )
    p.add_argument("--inbox", type=int, required=True)
    p.add_argument("--elevenlabs-agent-id")
    p.add_argument("--elevenlabs-api-key")
    p.add_argument("--elevenlabs-webhook-secret")


class AdminError(Exception):
    pass


def _listed_inbox(inbox: dict[str, Any]) -> dict[str, Any]:
    """An inbox in a listing: its HMAC key is printed only by create-inbox and
    rotate-hmac-token, the commands that make one."""
    out = inbox_json(inbox)
    del out["hmac_token"]
    return out


async def _list_accounts(conn: AsyncConnection, args: argparse.Namespace) -> dict[str, Any]:
    return {"accounts": await accounts_store.list_accounts(conn)}


async def _rotate_agent_token(conn: AsyncConnection, args: argparse.Namespace) -> dict[str, Any]:
    user = await accounts_store.rotate_user_tokens(conn, args.agent)
    if user is None:
        raise AdminError(f"no agent with id {args.agent}")
    return {k: user[k] for k in ("id", "name", "email", "access_token", "pubsub_token")}


async def _deactivate_agent(conn: AsyncConnection, args: argparse.Namespace) -> dict[str, Any]:
    """Out of every account and inbox, with tokens nobody knows: they reach nothing (sockets
    already open keep what they subscribed to until they reconnect)."""
    user = await accounts_store.rotate_user_tokens(conn, args.agent)
    if user is None:
        raise AdminError(f"no agent with id {args.agent}")
    await accounts_store.remove_memberships(conn, args.agent)
    return {"id": user["id"], "email": user["email"], "deactivated": True}


async def _rotate_hmac_token(conn: AsyncConnection, args: argparse.Namespace) -> dict[str, Any]:
    inbox = await accounts_store.rotate_hmac_token(conn, args.inbox)
    if inbox is None:
        raise AdminError(f"no inbox with id {args.inbox}")
    return inbox_json(inbox)


VOICE_OPTIONS = ("elevenlabs_agent_id", "elevenlabs_api_key", "elevenlabs_webhook_secret")


async def _set_inbox_voice(conn: AsyncConnection, args: argparse.Namespace) -> dict[str, Any]:
    """A new API key, webhook secret or agent: the webhook and the transcript fetches read
    the inbox afresh, widget requests within the 5 s web processes cache an inbox
    (services.InboxCache). The values are never printed back, only whether each is set."""
    changes = {}
    for name in VOICE_OPTIONS:
        value = getattr(args, name)
        if value is None:
            continue
        value = value.strip()
        if len(value) > 500 or any(c.isspace() or not c.isprintable() for c in value):
            raise AdminError(f"--{name.replace('_', '-')} must be at most 500 printable characters")
        changes[name] = value or None
    if not changes:
        raise AdminError(
            "give at least one of --elevenlabs-agent-id, --elevenlabs-api-key,"
            " --elevenlabs-webhook-secret"
        )
    inbox = await accounts_store.update_inbox(conn, args.inbox, changes)
    if inbox is None:
        raise AdminError(f"no inbox with id {args.inbox}")
    return _listed_inbox(inbox)


async def _create_label(
    conn: AsyncConnection, account_id: int, args: argparse.Namespace
) -> dict[str, Any]:
    """The same rules as POST /api/v1/accounts/{id}/labels (server/labels.py)."""
    try:
        new = NewLabel(
            account_id=account_id,
            title=labels.title(args.title, "--title"),
            description=args.description[: labels.MAX_DESCRIPTION],
            color=labels.color(args.color),
            show_on_sidebar=True,
        )
        label = await label_writes.create_label(conn, new)
    except ApiError as exc:
        raise AdminError(str(exc.body.get("error", exc.body))) from None
    return views.label_record(label)


# Commands that take no account: each reads or changes one thing, by id.
MAINTENANCE = {
    "list-accounts": _list_accounts,
    "rotate-agent-token": _rotate_agent_token,
    "deactivate-agent": _deactivate_agent,
    "rotate-hmac-token": _rotate_hmac_token,
    "set-inbox-voice": _set_inbox_voice,
}


async def run(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(
        settings.database_url,
        timeout=settings.db_timeout,
        auto_migrate=settings.auto_migrate,
        timed=False,
    )
    try:
        await db.start()
    except SchemaNotCurrent as exc:
        await db.close()
        print(dumps({"error": str(exc)}).decode(), file=sys.stderr)
        return 2
    try:
        result = await db.write(_command, args)
    except AdminError as exc:
        print(dumps({"error": str(exc)}).decode(), file=sys.stderr)
        return 2
    except Exception as exc:
        if not is_unique_violation(exc):
            raise
        # Lost a race with another command creating the same thing: still one JSON line.
        print(
            dumps({"error": "already exists (a unique value is taken)"}).decode(), file=sys.stderr
        )
        return 2
    finally:
        await db.close()
    print(dumps(result).decode())
    return 0


async def _command(conn: AsyncConnection, args: argparse.Namespace) -> dict[str, Any]:
    if args.command in MAINTENANCE:
        return await MAINTENANCE[args.command](conn, args)
    if args.command == "create-account":
        if not args.name.strip():
            raise AdminError("--name must not be blank")
        account = await accounts_store.create_account(conn, args.name.strip())
        return {"id": account["id"], "name": account["name"]}
    account = await accounts_store.get_account(conn, args.account)
    if account is None:
        raise AdminError(f"no account with id {args.account}")
    if args.command == "list-inboxes":
        rows = await accounts_store.inboxes_of_account(conn, account["id"])
        return {"inboxes": [_listed_inbox(row) for row in rows]}
    if args.command == "list-agents":
        return {"agents": await accounts_store.agents_of_account(conn, account["id"])}
    if args.command == "create-inbox":
        inbox = await accounts_store.create_inbox(
            conn,
            account_id=account["id"],
            name=args.name,
            website_url=args.website_url,
            end_conversation=args.end_conversation,
            hmac_mandatory=args.hmac_mandatory,
            elevenlabs_agent_id=args.elevenlabs_agent_id,
            elevenlabs_api_key=args.elevenlabs_api_key,
            elevenlabs_webhook_secret=args.elevenlabs_webhook_secret,
        )
        if args.no_attachments:
            inbox = await accounts_store.set_attachments(conn, inbox["id"], False)
        if args.csat_survey:
            inbox = await accounts_store.set_csat_survey(conn, inbox["id"], True)
        return inbox_json(inbox)
    if args.command == "create-label":
        return await _create_label(conn, account["id"], args)
    if args.command == "create-agent":
        known = {row["id"] for row in await accounts_store.inboxes_of_account(conn, account["id"])}
        unknown = [i for i in args.inbox if i not in known]
        if unknown:
            raise AdminError(f"inbox {unknown[0]} is not an inbox of account {account['id']}")
        if "@" not in args.email:
            raise AdminError("--email must be an email address")
        if await accounts_store.user_by_email(conn, args.email) is not None:
            raise AdminError(f"an agent with email {args.email.lower()} already exists")
        user = await accounts_store.create_agent(
            conn,
            account_id=account["id"],
            name=args.name,
            email=args.email,
            inbox_ids=args.inbox,
            administrator=args.administrator,
        )
        return agent_json(user)
    raise AdminError(f"unknown command {args.command}")
