"""Attachments over real HTTP, on both databases (issue 17 item 1, contract §2.4, §5.4, §6):
files a visitor or an agent sends show in the POST answer, in every message list and in
message.created on both sockets, with Chatwoot's attachment JSON; the files are served only
through signed, unexpired URLs, as downloads unless a browser may show them; every refused
upload (too many, too large, a type not allowed, an inbox without attachments, a write the
database refuses) leaves no file and no row."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.services import SERVICES
from server.settings import Settings
from server.store import accounts as accounts_store
from tests.attachments_helpers import (
    PDF,
    agent_upload,
    count_rows,
    png,
    stored_files,
    visitor_upload,
)
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World, build_world, make_settings, migrate

IMAGE = png()

ATTACHMENT_KEYS = {
    "id",
    "message_id",
    "file_type",
    "account_id",
    "extension",
    "data_url",
    "thumb_url",
    "file_size",
    "width",
    "height",
}


async def fetch(client: TestClient, url: str) -> Any:
    return await client.get(url)


async def test_visitor_files_show_in_answer_lists_and_events(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    await visitor.send("hello")  # the conversation exists: both sockets can listen
    agent = world.agent
    agent_cable = await CableClient.connect(client)
    await agent_cable.subscribe(
        agent_identifier(agent["pubsub_token"], world.account["id"], agent["id"])
    )
    visitor_cable = await CableClient.connect(client)
    assert visitor.pubsub_token is not None
    await visitor_cable.subscribe(visitor_identifier(visitor.pubsub_token))

    resp = await visitor_upload(
        visitor,
        [("shot.png", IMAGE, "image/png"), ("report.pdf", PDF, "application/pdf")],
        content="see these",
        echo_id="e-1",
    )
    assert resp.status == 200, await resp.text()
    sent = await resp.json()
    assert sent["content"] == "see these" and sent["echo_id"] == "e-1"
    image, doc = sent["attachments"]
    assert set(image) == ATTACHMENT_KEYS and set(doc) == ATTACHMENT_KEYS
    assert (image["file_type"], image["extension"], image["file_size"]) == (
        "image",
        "png",
        len(IMAGE),
    )
    assert (image["width"], image["height"]) == (400, 300)
    assert image["message_id"] == sent["id"] and image["account_id"] == world.account["id"]
    assert image["thumb_url"]
    assert (doc["file_type"], doc["extension"], doc["thumb_url"]) == ("file", "pdf", "")
    assert (doc["width"], doc["height"]) == (None, None)

    # The files, through their signed URLs.
    got = await fetch(client, image["data_url"])
    assert got.status == 200 and await got.read() == IMAGE
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].startswith("inline;")
    got = await fetch(client, doc["data_url"])
    assert got.status == 200 and await got.read() == PDF
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert 'filename="report.pdf"' in got.headers["Content-Disposition"]
    thumb = await fetch(client, image["thumb_url"])
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert (await thumb.read())[:2] == b"\xff\xd8"

    # message.created, to the agents and to the visitor, with the same attachments.
    def mine(d: dict[str, Any]) -> bool:
        return d["id"] == sent["id"]

    for cable in (agent_cable, visitor_cable):
        data = await cable.wait_event("message.created", mine)
        assert [a["id"] for a in data["attachments"]] == [image["id"], doc["id"]]
        assert data["attachments"][0]["file_type"] == "image"
        event_file = await fetch(client, data["attachments"][1]["data_url"])
        assert event_file.status == 200 and await event_file.read() == PDF

    # Every list: the widget's and the agents'.
    listed = await visitor.get("messages")
    rows = (await listed.json())["payload"]
    assert "attachments" not in rows[0]  # "hello": the key only when there are files
    assert [a["id"] for a in rows[-1]["attachments"]] == [image["id"], doc["id"]]
    again = await fetch(client, rows[-1]["attachments"][0]["data_url"])
    assert again.status == 200 and await again.read() == IMAGE
    agent_list = await client.get(
        f"/api/v1/accounts/{world.account['id']}/conversations/{sent['conversation_id']}/messages",
        headers={"api_access_token": agent["access_token"]},
    )
    payload = (await agent_list.json())["payload"]
    assert [a["file_type"] for a in payload[-1]["attachments"]] == ["image", "file"]

    # A retry (same echo_id) is the first message, and leaves no second copy of the files.
    before = len(stored_files(client))
    retry = await visitor_upload(
        visitor, [("shot.png", IMAGE, "image/png")], content="see these", echo_id="e-1"
    )
    assert retry.status == 200, await retry.text()
    assert (await retry.json())["id"] == sent["id"]
    assert len(stored_files(client)) == before
    await agent_cable.close()
    await visitor_cable.close()


async def test_files_alone_open_a_conversation(client: TestClient, visitor: Visitor) -> None:
    resp = await visitor_upload(visitor, [("a.png", IMAGE, "image/png")])
    assert resp.status == 200, await resp.text()
    sent = await resp.json()
    assert sent["content"] is None and len(sent["attachments"]) == 1
    assert (await count_rows(client)) == (1, 1)


async def test_agent_replies_with_a_file(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    first = await visitor.send("need the invoice")
    visitor_cable = await CableClient.connect(client)
    assert visitor.pubsub_token is not None
    await visitor_cable.subscribe(visitor_identifier(visitor.pubsub_token))
    resp = await agent_upload(
        client,
        world.agent,
        world.account["id"],
        first["conversation_id"],
        [("invoice.pdf", PDF, "application/pdf")],
        content="here it is",
        echo_id="a-1",
    )
    assert resp.status == 200, await resp.text()
    reply = await resp.json()
    assert reply["content"] == "here it is" and reply["message_type"] == 1
    (att,) = reply["attachments"]
    assert att["file_type"] == "file" and att["file_size"] == len(PDF)
    data = await visitor_cable.wait_event("message.created", lambda d: d["id"] == reply["id"])
    assert data["attachments"][0]["id"] == att["id"]
    rows = (await (await visitor.get("messages")).json())["payload"]
    got = await fetch(client, rows[-1]["attachments"][0]["data_url"])
    assert got.status == 200 and await got.read() == PDF
    # Files alone are a reply too; neither content nor files is not.
    alone = await agent_upload(
        client,
        world.agent,
        world.account["id"],
        first["conversation_id"],
        [("b.png", IMAGE, "image/png")],
    )
    assert alone.status == 200, await alone.text()
    empty = await agent_upload(
        client, world.agent, world.account["id"], first["conversation_id"], []
    )
    assert empty.status == 422
    # Stored under the conversation's own account and inbox, like the visitor's files.
    root = client.app[SERVICES].settings.data_dir / "attachments"
    prefix = f"a{world.account['id']}/i{world.inbox['id']}/"
    kept = [p.relative_to(root).as_posix() for p in stored_files(client)]
    assert kept and all(k.startswith(prefix) for k in kept), kept
    # A conversation the agent cannot see: a 404 before any file is stored.
    before = sorted(stored_files(client))
    unknown = await agent_upload(
        client, world.agent, world.account["id"], 999_999, [("x.pdf", PDF, "application/pdf")]
    )
    assert unknown.status == 404
    assert sorted(stored_files(client)) == before
    await visitor_cable.close()


async def test_sixteen_files_are_refused(client: TestClient, visitor: Visitor) -> None:
    await visitor.send("hi")
    files = [(f"f{i}.txt", b"x" * 10, "text/plain") for i in range(16)]
    resp = await visitor_upload(visitor, files, content="many")
    assert resp.status == 422
    assert "at most 15" in (await resp.json())["error"]
    assert stored_files(client) == []
    assert (await count_rows(client)) == (1, 0)
    ok = await visitor_upload(visitor, files[:15], content="fifteen")
    assert ok.status == 200, await ok.text()
    assert len((await ok.json())["attachments"]) == 15


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("page.html", "text/html"),
        ("icon.exe", "application/x-msdownload"),
        ("evil", "image/png; x=<script>"),
    ],
)
async def test_types_not_allowed_are_refused(
    client: TestClient, visitor: Visitor, name: str, ctype: str
) -> None:
    body = b"<html><script>alert(1)</script></html>"
    resp = await visitor_upload(visitor, [(name, body, ctype)], content="x")
    if ctype.startswith("image/png"):  # allowed type, but not an image: refused too
        assert resp.status == 422
        assert "not a valid image" in (await resp.json())["error"]
    else:
        assert resp.status == 422
        assert "not allowed" in (await resp.json())["error"]
    assert stored_files(client) == []
    assert (await count_rows(client)) == (0, 0)


async def test_an_image_over_the_pixel_limit_is_refused(
    db_url: str, tmp_path: Any, aiohttp_client: Any
) -> None:
    settings = make_settings(db_url, tmp_path, attachment_max_pixels=10_000)
    client = await aiohttp_client(create_app(settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    resp = await visitor_upload(visitor, [("big.png", png(200, 200), "image/png")])
    assert resp.status == 422 and "too large" in (await resp.json())["error"]
    assert stored_files(client) == []
    ok = await visitor_upload(visitor, [("small.png", png(50, 50), "image/png")])
    assert ok.status == 200, await ok.text()


async def test_an_oversize_file_is_refused_and_leaves_nothing(
    db_url: str, tmp_path: Any, aiohttp_client: Any
) -> None:
    settings = make_settings(db_url, tmp_path, attachment_max_bytes=64 * 1024)
    client = await aiohttp_client(create_app(settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    small = ("small.txt", b"s" * 1000, "text/plain")
    big = ("big.txt", b"b" * (256 * 1024), "text/plain")
    resp = await visitor_upload(visitor, [small, big], content="too big")
    assert resp.status == 413
    body = await resp.json()
    assert body["limit"] == 64 * 1024 and "larger than" in body["error"]
    assert stored_files(client) == []
    assert (await count_rows(client)) == (0, 0)
    # The globalConfig the widget reads says the limit, in MB.
    cfg = await visitor.post("config")
    assert (await cfg.json())["global_config"]["MAXIMUM_FILE_UPLOAD_SIZE"] == 0.062


async def test_a_write_the_database_refuses_leaves_no_file(
    db_url: str, tmp_path: Any, aiohttp_client: Any
) -> None:
    """The flood check refuses the message inside its write, after the files were stored:
    they are deleted again."""
    settings = make_settings(db_url, tmp_path, messages_per_minute=1)
    client = await aiohttp_client(create_app(settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    await visitor.send("one")
    resp = await visitor_upload(visitor, [("a.png", IMAGE, "image/png")], content="two")
    assert resp.status == 422, await resp.text()
    assert stored_files(client) == []
    assert (await count_rows(client)) == (1, 0)


async def test_an_inbox_without_attachments_refuses_files(client: TestClient, world: World) -> None:
    db = client.app[SERVICES].db

    async def make(conn: Any) -> dict[str, Any]:
        inbox = await accounts_store.create_inbox(
            conn, account_id=world.account["id"], name="No files"
        )
        return await accounts_store.set_attachments(conn, inbox["id"], False)

    closed = await db.write(make)
    visitor = await Visitor(client, closed["website_token"]).start()
    cfg = await (await visitor.post("config")).json()
    assert "attachments" not in cfg["website_channel_config"]["enabled_features"]
    resp = await visitor_upload(visitor, [("a.png", IMAGE, "image/png")], content="x")
    assert resp.status == 422
    assert "turned off" in (await resp.json())["error"]
    assert stored_files(client) == []
    # Inboxes take files by default, and say so.
    default = await Visitor(client, world.inbox["website_token"]).start()
    cfg = await (await default.post("config")).json()
    assert "attachments" in cfg["website_channel_config"]["enabled_features"]
    page = await client.get(f"/widget?website_token={world.inbox['website_token']}")
    assert '"attachments"' in await page.text()


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


async def test_urls_that_are_tampered_expired_or_forged_are_refused(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await (await visitor_upload(visitor, [("a.png", IMAGE, "image/png")])).json()
    url = sent["attachments"][0]["data_url"]
    assert (await fetch(client, url)).status == 200
    # Another inbox's visitor and file.
    other = await Visitor(client, world.other_inbox["website_token"]).start()
    theirs = await (await visitor_upload(other, [("b.pdf", PDF, "application/pdf")])).json()
    their_url = theirs["attachments"][0]["data_url"]

    signature = parse_qs(urlsplit(url).query)["signature"][0]
    refused = [
        _with(url, signature="0" * 64),
        _with(url, signature=signature[:-1] + ("0" if signature[-1] != "0" else "1")),
        _with(url, type="text/html"),  # served as something else
        _with(url, name="evil.html"),
        _with(url, expires=str(int(time.time()) + 10**6)),  # a longer life
        # Their file with my signature: a signature is good for its own key only.
        _with(their_url, signature=signature, expires=parse_qs(urlsplit(url).query)["expires"][0]),
        url.split("?", 1)[0],  # no signature at all
    ]
    for bad in refused:
        resp = await fetch(client, bad)
        assert resp.status == 403, bad
        assert "not valid" in (await resp.json())["error"]
    # An expired URL, correctly signed.
    storage = client.app[SERVICES].attachments.storage
    key = urlsplit(url).path[len("/attachments/") :]
    past = str(int(time.time()) - 5)
    expired = _with(url, expires=past, signature=storage._sign(key, past, "image/png", "a.png"))
    assert (await fetch(client, expired)).status == 403
    # Paths outside the storage's keys never reach the disk.
    for path in ("/attachments/../secret_key_base", "/attachments/a1/i1/..%2F..%2Fchat.db"):
        assert (await fetch(client, path + "?signature=x")).status in (403, 404)


async def test_multipart_bodies_are_bounded(client: TestClient, visitor: Visitor) -> None:
    # A file in a field the endpoint does not take.
    data = aiohttp.FormData()
    data.add_field("message[content]", "hi")
    data.add_field("other", b"x", filename="x.txt", content_type="text/plain")
    resp = await visitor.client.post(
        visitor._url("messages"), data=data, headers=visitor._headers()
    )
    assert resp.status == 400
    # Too many text parts.
    data = aiohttp.FormData()
    for i in range(60):
        data.add_field(f"message[f{i}]", "v")
    resp = await visitor.client.post(
        visitor._url("messages"), data=data, headers=visitor._headers()
    )
    assert resp.status == 400
    assert stored_files(client) == []


def test_storage_settings_are_validated(tmp_path: Any) -> None:
    from server.settings import SettingsError

    base = {"DATA_DIR": str(tmp_path), "SECRET_KEY_BASE": "x"}
    ok = Settings.from_env({**base, "STORAGE_URL": "s3://bucket/some/prefix"})
    assert ok.storage_url == "s3://bucket/some/prefix"
    for bad in ("http://x", "s3://", "ftp://bucket"):
        with pytest.raises(SettingsError, match="STORAGE_URL"):
            Settings.from_env({**base, "STORAGE_URL": bad})
    with pytest.raises(SettingsError, match="ATTACHMENT_MAX_BYTES"):
        Settings.from_env({**base, "ATTACHMENT_MAX_BYTES": "10"})
    with pytest.raises(SettingsError, match="ATTACHMENT_URL_TTL"):
        Settings.from_env({**base, "ATTACHMENT_URL_TTL": "1"})


async def test_create_inbox_no_attachments_flag(
    db_url: str, tmp_path: Any, aiohttp_client: Any
) -> None:
    """`python -m server admin create-inbox --no-attachments`, as a real subprocess: the
    inbox is stored without the feature, and its widget does not offer it."""
    from tests.test_admin_cli import admin_in_process as admin
    from tests.test_admin_cli import one_json_object

    if db_url.startswith("sqlite"):
        await migrate(db_url)
    code, out, err = await admin(db_url, tmp_path, "create-account", "--name", "Files")
    assert code == 0, err
    account = one_json_object(out)["id"]
    args = ("create-inbox", "--account", str(account), "--name")
    code, out, err = await admin(db_url, tmp_path, *args, "Closed", "--no-attachments")
    assert code == 0, err
    closed = one_json_object(out)
    assert closed["attachments_enabled"] is False
    code, out, err = await admin(db_url, tmp_path, *args, "Open")
    assert one_json_object(out)["attachments_enabled"] is True
    settings = make_settings(db_url, tmp_path)
    client = await aiohttp_client(create_app(settings))
    page = await client.get(f"/widget?website_token={closed['website_token']}")
    assert page.status == 200 and '"attachments"' not in await page.text()


async def test_a_body_announced_too_large_is_refused_before_it_is_read(
    client: TestClient, visitor: Visitor
) -> None:
    """A Content-Length past 15 files at the limit is a 413 on the head alone: the server
    answers while the client has sent none of the body (nothing is read or buffered)."""
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = (
            f"POST {visitor._url('messages')} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            f"X-Auth-Token: {visitor.auth_token}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            "Content-Length: 20000000000\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            assert b" 413 " in status_line, status_line
    finally:
        writer.close()
    assert stored_files(client) == []
