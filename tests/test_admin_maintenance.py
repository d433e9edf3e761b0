"""Admin commands that list and rotate (issue 16 item 6), each run as `python -m server
admin` runs it (its parser, settings and `server.admin.run`, in this process: the command
line itself is tests/test_admin_cli.py's), checked against a real app on the same database
(both engines): a rotated agent token stops working at once, a rotated HMAC key refuses the
old key's hashes, a deactivated agent reaches nothing, and listings never print secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.auth import identifier_hash
from tests.conftest import make_settings
from tests.test_admin_cli import SECRET
from tests.test_admin_cli import admin_in_process as admin


async def ok(db_url: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    code, out, err = await admin(db_url, tmp_path, *args)
    assert code == 0, err
    return orjson.loads(out)


async def test_list_rotate_and_deactivate(db_url: str, tmp_path: Path, aiohttp_client: Any) -> None:
    account = await ok(db_url, tmp_path, "create-account", "--name", "Acme")
    acc = str(account["id"])
    inbox = await ok(db_url, tmp_path, "create-inbox", "--account", acc, "--name", "Site")
    agent = await ok(
        db_url, tmp_path, "create-agent", "--account", acc, "--name", "Ann", "--email", "a@x.io",
        "--inbox", str(inbox["id"]),
    )  # fmt: skip

    listed = await ok(db_url, tmp_path, "list-accounts")
    assert {"id": account["id"], "name": "Acme", "status": "active"} in listed["accounts"]
    inboxes = (await ok(db_url, tmp_path, "list-inboxes", "--account", acc))["inboxes"]
    assert [i["id"] for i in inboxes] == [inbox["id"]]
    assert "hmac_token" not in inboxes[0] and inboxes[0]["website_token"]
    agents = (await ok(db_url, tmp_path, "list-agents", "--account", acc))["agents"]
    assert agents == [{"id": agent["id"], "name": "Ann", "email": "a@x.io", "role": "agent"}]

    settings = make_settings(db_url, tmp_path, secret_key_base=SECRET)
    client: TestClient = await aiohttp_client(create_app(settings))

    async def profile(token: str) -> int:
        resp = await client.get("/api/v1/profile", headers={"api_access_token": token})
        return resp.status

    assert await profile(agent["access_token"]) == 200
    rotated = await ok(db_url, tmp_path, "rotate-agent-token", "--agent", str(agent["id"]))
    assert rotated["access_token"] != agent["access_token"]
    assert rotated["pubsub_token"] != agent["pubsub_token"]
    assert await profile(agent["access_token"]) == 401  # at once: nothing caches it
    assert await profile(rotated["access_token"]) == 200

    new = await ok(db_url, tmp_path, "rotate-hmac-token", "--inbox", str(inbox["id"]))
    assert new["hmac_token"] != inbox["hmac_token"]
    # The app read no inbox yet (its cache is empty): the new key is the one in force.
    config = await client.post(f"/api/v1/widget/config?website_token={inbox['website_token']}")
    auth = {"X-Auth-Token": (await config.json())["website_channel_config"]["auth_token"]}
    url = f"/api/v1/widget/contact/set_user?website_token={inbox['website_token']}"
    for key, status in ((inbox["hmac_token"], 401), (new["hmac_token"], 200)):
        body = {"identifier": "u-1", "identifier_hash": identifier_hash(key, "u-1")}
        assert (await client.patch(url, json=body, headers=auth)).status == status

    gone = await ok(db_url, tmp_path, "deactivate-agent", "--agent", str(agent["id"]))
    assert gone == {"id": agent["id"], "email": "a@x.io", "deactivated": True}
    assert await profile(rotated["access_token"]) == 401
    assert (await ok(db_url, tmp_path, "list-agents", "--account", acc))["agents"] == []

    for args in (
        ("rotate-agent-token", "--agent", "999999"),
        ("deactivate-agent", "--agent", "999999"),
        ("rotate-hmac-token", "--inbox", "999999"),
        ("list-inboxes", "--account", "999999"),
    ):
        code, _, err = await admin(db_url, tmp_path, *args)
        assert code == 2 and "999999" in orjson.loads(err)["error"], (args, err)
