"""Shared fixtures: every store-backed test runs on SQLite and on PostgreSQL.

PostgreSQL tests create a database of their own on the local server (TEST_PG_DSN, default
postgresql://postgres@127.0.0.1:5432/postgres) and drop it afterwards."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.services import SERVICES
from server.settings import Settings
from server.store import accounts as accounts_store
from server.store.db import Database

PG_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "test-secret-" + "x" * 40


def _pg_base() -> str:
    return PG_DSN.rsplit("/", 1)[0]


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    async with temp_pg_database() as url:
        yield url


async def migrate(url: str) -> None:
    """What an operator runs before starting processes on PostgreSQL (`python -m server
    migrate`), which do not migrate it themselves."""
    db = Database(url)
    try:
        await db.migrate()
    finally:
        await db.close()


class temp_pg_database:
    """async with temp_pg_database() as url: a fresh PostgreSQL database, dropped after.
    Migrated to the code's schema unless `migrated=False` (then empty)."""

    def __init__(self, migrated: bool = True) -> None:
        self.name = f"chat_test_{uuid.uuid4().hex[:12]}"
        self.migrated = migrated

    async def __aenter__(self) -> str:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()
        url = f"postgresql+asyncpg://{_pg_base().split('://', 1)[1]}/{self.name}"
        if self.migrated:
            await migrate(url)
        return url

    async def __aexit__(self, *exc: object) -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


def make_settings(db_url: str, tmp_path: Any, **overrides: Any) -> Settings:
    env = {
        "DATABASE_URL": db_url,
        "SECRET_KEY_BASE": SECRET,
        "DATA_DIR": str(tmp_path / "data"),
        "SEED_DEMO": "0",
        "LOG_LEVEL": "WARNING",
    }
    return Settings.from_env(env, **overrides)


@pytest.fixture
def settings(db_url: str, tmp_path: Any) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    # `settings` first: its database is then set up before the app and dropped after it.
    return await aiohttp_client(create_app(settings))


@dataclass
class World:
    """An account with two website inboxes and agents, made through the store."""

    account: dict[str, Any]
    inbox: dict[str, Any]
    other_inbox: dict[str, Any]
    agent: dict[str, Any]
    admin: dict[str, Any]
    db: Database


async def build_world(db: Database) -> World:
    async def op(conn: Any) -> World:
        account = await accounts_store.create_account(conn, "Acme")
        inbox = await accounts_store.create_inbox(
            conn, account_id=account["id"], name="Acme site", end_conversation=True
        )
        other = await accounts_store.create_inbox(
            conn, account_id=account["id"], name="Other site", end_conversation=False
        )
        agent = await accounts_store.create_agent(
            conn,
            account_id=account["id"],
            name="Agent A",
            email=f"a-{secrets.token_hex(4)}@x.io",
            inbox_ids=[inbox["id"]],
        )
        admin = await accounts_store.create_agent(
            conn,
            account_id=account["id"],
            name="Admin",
            email=f"b-{secrets.token_hex(4)}@x.io",
            inbox_ids=[],
            administrator=True,
        )
        return World(account, inbox, other, agent, admin, db)

    return await db.write(op)


@pytest.fixture
async def world(client: TestClient) -> World:
    return await build_world(client.app[SERVICES].db)


class Visitor:
    """A website visitor: a contact token from /config, sent on every call like the widget."""

    def __init__(self, client: TestClient, website_token: str) -> None:
        self.client = client
        self.website_token = website_token
        self.auth_token: str | None = None
        self.pubsub_token: str | None = None
        self.contact_id: int | None = None

    async def start(self) -> Visitor:
        resp = await self.client.post(f"/api/v1/widget/config?website_token={self.website_token}")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        self.auth_token = body["website_channel_config"]["auth_token"]
        self.pubsub_token = body["contact"]["pubsub_token"]
        self.contact_id = body["contact"]["id"]
        return self

    def _url(self, path: str, query: str = "") -> str:
        sep = "&" if "?" in path else "?"
        return f"/api/v1/widget/{path}{sep}website_token={self.website_token}{query}"

    def _headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.auth_token} if self.auth_token else {}

    async def request(self, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        return await self.client.request(
            method, self._url(path), json=json, headers=self._headers(), **kw
        )

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return await self.request("POST", path, json=json, **kw)

    async def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return await self.request("PATCH", path, json=json, **kw)

    async def send(self, content: str) -> dict[str, Any]:
        resp = await self.post("messages", {"message": {"content": content}})
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.fixture
async def visitor(client: TestClient, world: World) -> Visitor:
    return await Visitor(client, world.inbox["website_token"]).start()
