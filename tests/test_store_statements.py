"""What each kind of write costs: the statements it sends, in order, on each engine.

A request's statements are decided by what the request is, not by how the code is arranged:
a change to these lists is a change of cost, made on purpose and said so here. Reads the
request makes (its visitor, the agent's access) are listed too: they are round trips as well.

Issue 15 (the store reorganized around one call per kind of write) kept every statement of
the code before it, in the same order, and took out these (same test, run on the commit
before it):
- a visitor's first message: on PostgreSQL the bump of a conversation the unlocked read had
  just found missing, and the look for one before locking the contact_inbox (13 -> 11); on
  SQLite, where the group commit holds the only write lock, the contact_inbox lock and both
  looks (14 -> 11);
- the re-read of a conversation as an UPDATE of updated_at (`lock`): a status change read
  under the row lock then UPDATE once (agent: 4 conversation statements -> 2); a reopen, one
  UPDATE instead of two; a transcript turn with an event_id, its conversation read FOR
  UPDATE once; a new conversation's answer built from what was written (no UPDATE, no
  SELECT);
- a conversation's contact and contact_inbox in one SELECT instead of two (agent message,
  agent status change);
- the visitor's conversation changes (attributes, status, read): the read of their current
  conversation moved into the write's transaction (PostgreSQL: no BEGIN/COMMIT of its own).

Issue 17 added one statement to resolving a conversation: the inbox's CSAT setting (and, when
it is on, whether the conversation had its survey; then the survey message's write).

Issue 19 added the activity line to an agent's status change ("Conversation was marked
resolved by Ada"): its write, in the change's transaction (the bump, the message, its
message.created); the contact is read once, before the change, for the events and the line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.services import SERVICES
from tests.conftest import Visitor, build_world, make_settings
from tests.statements import StatementLog, watch

RECORD = os.environ.get("RECORD_STATEMENTS") == "1"
# DUMP_STATEMENTS=FILE: append each path's full statements there (one JSON line per path),
# to diff the SQL itself between two versions of the code.
DUMP = os.environ.get("DUMP_STATEMENTS")


@pytest.fixture
async def traced(
    db_url: str, tmp_path: Any, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[TestClient, StatementLog]:
    # No relay in the process: its reads and marks would interleave with the request's.
    app = create_app(make_settings(db_url, tmp_path, run_relay=False))
    svc = app[SERVICES]
    svc.inboxes.ttl = 3600.0  # the inbox is read once, not again when 5 s have passed
    log = watch(svc.db, monkeypatch)
    return await aiohttp_client(app), log


async def test_statements_per_write(traced: tuple[TestClient, StatementLog], db_url: str) -> None:
    client, log = traced
    engine = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    agent = {"api_access_token": world.agent["access_token"]}
    base = f"/api/v1/accounts/{world.account['id']}/conversations"
    seen: dict[str, list[str]] = {}
    texts: dict[str, list[str]] = {}

    async def request(name: str, method: str, url: str, **kw: Any) -> Any:
        log.clear()
        resp = await client.request(method, url, **kw)
        assert resp.status in (200, 204), (name, resp.status, await resp.text())
        texts[name] = log.texts
        seen[name] = log.take()
        return await resp.json() if resp.status == 200 and resp.content_length != 0 else None

    def widget(path: str) -> str:
        return f"/api/v1/widget/{path}?website_token={world.inbox['website_token']}"

    vh = {"X-Auth-Token": visitor.auth_token}
    msg = {"message": {"content": "hello"}}
    first = await request("visitor first message", "POST", widget("messages"), json=msg, headers=vh)
    display_id = first["conversation_id"]
    await request("visitor message", "POST", widget("messages"), json=msg, headers=vh)
    reply = {"content": "hi there"}
    await request(
        "agent message", "POST", f"{base}/{display_id}/messages", json=reply, headers=agent
    )
    turn = {"source": "user", "content": "spoken", "event_id": "turn-1"}
    await request(
        "transcript turn", "POST", widget("conversations/voice_transcript"), json=turn, headers=vh
    )
    await request(
        "agent status change",
        "POST",
        f"{base}/{display_id}/toggle_status",
        json={"status": "resolved"},
        headers=agent,
    )
    await request("visitor message reopens", "POST", widget("messages"), json=msg, headers=vh)
    attrs = {"custom_attributes": {"plan": "pro"}}
    await request(
        "set attributes",
        "POST",
        widget("conversations/set_custom_attributes"),
        json=attrs,
        headers=vh,
    )
    await request(
        "remove attributes",
        "POST",
        widget("conversations/destroy_custom_attributes"),
        json={"custom_attribute": ["plan"]},
        headers=vh,
    )
    await request(
        "visitor marks read", "POST", widget("conversations/update_last_seen"), json={}, headers=vh
    )
    await request(
        "agent marks read",
        "POST",
        f"{base}/{display_id}/update_last_seen",
        json={},
        headers=agent,
    )
    await request("visitor status change", "GET", widget("conversations/toggle_status"), headers=vh)
    await request("open conversation", "POST", widget("conversations"), json=msg, headers=vh)
    if DUMP:
        lines = [json.dumps({"engine": engine, "path": k, "sql": v}) for k, v in texts.items()]
        with Path(DUMP).open("a") as out:  # noqa: ASYNC230 (a debugging aid, after the test)
            out.write("\n".join(lines) + "\n")
    if RECORD:  # RECORD_STATEMENTS=1 pytest -s: print what the code sends now
        for name, shapes in seen.items():
            print(f"{engine}: {name}: {shapes}")
        return
    assert seen == EXPECTED[engine]


# The reads before a write: the agent's access (auth.agent), the visitor (context.visitor).
AGENT_ACCESS = ["BEGIN", "SELECT users", "SELECT account_users", "SELECT inboxes", "COMMIT"]
VISITOR = ["BEGIN", "SELECT contacts", "COMMIT"]

EXPECTED: dict[str, dict[str, list[str]]] = {
    "sqlite": {
        "visitor first message": [
            "BEGIN",
            "SAVEPOINT",
            "SELECT contacts",
            "UPDATE accounts",
            "INSERT conversations",
            "INSERT outbox",
            "UPDATE conversations",
            "INSERT messages",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
        "visitor message": [
            "BEGIN",
            "SAVEPOINT",
            "SELECT contacts",
            "UPDATE conversations",
            "INSERT messages",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
        "agent message": [
            *AGENT_ACCESS,
            "BEGIN",
            "SAVEPOINT",
            "SELECT conversations",
            "SELECT contacts",
            "UPDATE conversations",
            "INSERT messages",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
        "transcript turn": [
            *VISITOR,
            "BEGIN",
            "SAVEPOINT",
            "SELECT voice_calls",  # the visitor's latest call (live, or ended in the last 60 s)
            "SELECT conversations",
            "SELECT messages",
            "UPDATE conversations",
            "INSERT messages",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
        "agent status change": [
            *AGENT_ACCESS,
            "BEGIN",
            "SAVEPOINT",
            "SELECT conversations",
            "SELECT contacts",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox",
            "INSERT outbox",
            "UPDATE conversations",  # the activity line: its bump, the message, its event
            "INSERT messages",
            "INSERT outbox",
            "SELECT inboxes",  # resolving: does the inbox send the CSAT survey?
            "RELEASE",
            "COMMIT",
        ],
        "visitor message reopens": [
            "BEGIN",
            "SAVEPOINT",
            "SELECT contacts",
            "UPDATE conversations",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox",
            "INSERT outbox",
            "INSERT messages",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
        "set attributes": [
            *VISITOR,
            "BEGIN",
            "SAVEPOINT",
            "SELECT conversations",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
        "remove attributes": [
            *VISITOR,
            "BEGIN",
            "SAVEPOINT",
            "SELECT conversations",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
        "visitor marks read": [
            *VISITOR,
            "BEGIN",
            "SAVEPOINT",
            "SELECT conversations",
            "UPDATE conversations",
            "SELECT messages",
            "UPDATE messages",
            "SELECT users",
            "INSERT outbox",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
        "agent marks read": [
            *AGENT_ACCESS,
            "BEGIN",
            "SAVEPOINT",
            "SELECT conversations",
            "UPDATE conversations",
            "RELEASE",
            "COMMIT",
        ],
        "visitor status change": [
            *VISITOR,
            "BEGIN",
            "SAVEPOINT",
            "SELECT conversations",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox",
            "INSERT outbox",
            "SELECT inboxes",  # resolving: does the inbox send the CSAT survey?
            "RELEASE",
            "COMMIT",
        ],
        "open conversation": [
            *VISITOR,
            "BEGIN",
            "SAVEPOINT",
            "UPDATE accounts",
            "INSERT conversations",
            "INSERT outbox",
            "UPDATE conversations",
            "INSERT messages",
            "INSERT outbox",
            "RELEASE",
            "COMMIT",
        ],
    },
    "postgresql": {
        "visitor first message": [
            "SELECT contact_inboxes",
            "BEGIN",
            "SELECT contacts",
            "UPDATE contact_inboxes",
            "SELECT conversations",
            "UPDATE accounts",
            "INSERT conversations",
            "INSERT outbox + NOTIFY",
            "UPDATE conversations",
            "INSERT messages + INSERT outbox + NOTIFY",
            "COMMIT",
        ],
        "visitor message": [
            "SELECT contact_inboxes",
            "UPDATE conversations + INSERT messages + INSERT outbox + NOTIFY",
        ],
        "agent message": [
            *AGENT_ACCESS,
            "BEGIN",
            "SELECT conversations",
            "SELECT contacts",
            "UPDATE conversations",
            "INSERT messages + INSERT outbox + NOTIFY",
            "COMMIT",
        ],
        "transcript turn": [
            *VISITOR,
            "BEGIN",
            "SELECT voice_calls",  # the visitor's latest call (live, or ended in the last 60 s)
            "SELECT conversations FOR UPDATE",
            "SELECT messages",
            "UPDATE conversations",
            "INSERT messages + INSERT outbox + NOTIFY",
            "COMMIT",
        ],
        "agent status change": [
            *AGENT_ACCESS,
            "BEGIN",
            "SELECT conversations FOR UPDATE",
            "SELECT contacts",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox + NOTIFY",
            "INSERT outbox + NOTIFY",
            "UPDATE conversations",  # the activity line: its bump, the message, its event
            "INSERT messages + INSERT outbox + NOTIFY",
            "SELECT inboxes",  # resolving: does the inbox send the CSAT survey?
            "COMMIT",
        ],
        "visitor message reopens": [
            "SELECT contact_inboxes",
            "BEGIN",
            "UPDATE conversations",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox + NOTIFY",
            "INSERT outbox + NOTIFY",
            "INSERT messages + INSERT outbox + NOTIFY",
            "COMMIT",
        ],
        "set attributes": [
            *VISITOR,
            "BEGIN",
            "SELECT conversations",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox + NOTIFY",
            "COMMIT",
        ],
        "remove attributes": [
            *VISITOR,
            "BEGIN",
            "SELECT conversations FOR UPDATE",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox + NOTIFY",
            "COMMIT",
        ],
        "visitor marks read": [
            *VISITOR,
            "BEGIN",
            "SELECT conversations",
            "UPDATE conversations",
            "SELECT messages",
            "UPDATE messages",
            "SELECT users",
            "INSERT outbox + NOTIFY",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox + NOTIFY",
            "COMMIT",
        ],
        "agent marks read": [
            *AGENT_ACCESS,
            "BEGIN",
            "SELECT conversations",
            "UPDATE conversations",
            "COMMIT",
        ],
        "visitor status change": [
            *VISITOR,
            "BEGIN",
            "SELECT conversations FOR UPDATE",
            "UPDATE conversations",
            "SELECT messages",
            "SELECT voice_calls",
            "INSERT outbox + NOTIFY",
            "INSERT outbox + NOTIFY",
            "SELECT inboxes",  # resolving: does the inbox send the CSAT survey?
            "COMMIT",
        ],
        "open conversation": [
            *VISITOR,
            "BEGIN",
            "UPDATE accounts",
            "INSERT conversations",
            "INSERT outbox + NOTIFY",
            "UPDATE conversations",
            "INSERT messages + INSERT outbox + NOTIFY",
            "COMMIT",
        ],
    },
}
