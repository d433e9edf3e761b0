"""The S3 storage engine end to end (issue 17 item 1), against a local S3-compatible server
the test starts on 127.0.0.1 (moto's server mode: a fake of a service we cannot reach here),
on both databases: files go to the bucket under the prefix, the answers carry presigned URLs
a browser fetches straight from the store with the right type and disposition, a refused
upload leaves no object, and /readyz reports the store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from server.app import create_app
from server.services import SERVICES
from tests.attachments_helpers import PDF, count_rows, png, visitor_upload
from tests.conftest import Visitor, build_world, make_settings
from tests.procs import free_port

KEYS = {"aws_access_key_id": "test-key", "aws_secret_access_key": "test-secret"}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def _objects(endpoint: str, bucket: str) -> list[str]:
    async with get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=endpoint, **KEYS
    ) as s3:
        listed = await s3.list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture
async def bucket(s3_endpoint: str) -> AsyncIterator[tuple[str, str]]:
    """(endpoint, a new bucket's name)."""
    name = f"chat-files-{uuid.uuid4().hex[:12]}"
    async with get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=s3_endpoint, **KEYS
    ) as s3:
        await s3.create_bucket(Bucket=name)
    yield s3_endpoint, name


async def test_s3_engine_end_to_end(
    db_url: str, tmp_path: Any, aiohttp_client: Any, bucket: tuple[str, str]
) -> None:
    # moto keeps buckets per process, across its servers: each test has a bucket of its own.
    endpoint, name = bucket
    settings = make_settings(
        db_url,
        tmp_path,
        storage_url=f"s3://{name}/chat/uploads",
        s3_endpoint_url=endpoint,
        s3_path_style=True,
        s3_access_key_id=KEYS["aws_access_key_id"],
        s3_secret_access_key=KEYS["aws_secret_access_key"],
        attachment_max_bytes=64 * 1024,
        messages_per_minute=2,
    )
    client = await aiohttp_client(create_app(settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    image = png(120, 80)

    resp = await visitor_upload(
        visitor,
        [("pic.png", image, "image/png"), ("doc.pdf", PDF, "application/pdf")],
        content="via s3",
    )
    assert resp.status == 200, await resp.text()
    pic, doc = (await resp.json())["attachments"]
    assert (pic["width"], pic["height"]) == (120, 80) and pic["thumb_url"]
    objects = await _objects(endpoint, name)
    assert len(objects) == 3 and all(k.startswith("chat/uploads/a") for k in objects)
    # No local copy: the web process keeps nothing on disk.
    assert not list((settings.data_dir / "attachments").rglob("*"))
    assert not [p for p in (settings.data_dir / "uploads").rglob("*") if p.is_file()]

    async with aiohttp.ClientSession() as browser:
        for att, body, ctype, kind in (
            (pic, image, "image/png", "inline"),
            (doc, PDF, "application/pdf", "attachment"),
        ):
            assert att["data_url"].startswith(f"{endpoint}/{name}/chat/uploads/")
            assert "X-Amz-Signature=" in att["data_url"]
            async with browser.get(att["data_url"]) as got:
                assert got.status == 200
                assert await got.read() == body
                assert got.headers["Content-Type"] == ctype
                assert got.headers["Content-Disposition"].startswith(kind)
        async with browser.get(pic["thumb_url"]) as thumb:
            assert thumb.status == 200 and (await thumb.read())[:2] == b"\xff\xd8"

    # Listed again: freshly presigned URLs that work.
    rows = (await (await visitor.get("messages")).json())["payload"]
    url = rows[-1]["attachments"][1]["data_url"]
    async with aiohttp.ClientSession() as browser, browser.get(url) as got:
        assert got.status == 200 and await got.read() == PDF

    # Refused uploads leave no object: too large, and a write the database refuses (the
    # flood check: two messages a minute here).
    big = await visitor_upload(visitor, [("big.txt", b"b" * (128 * 1024), "text/plain")])
    assert big.status == 413
    assert await visitor.send("second") is not None
    flooded = await visitor_upload(visitor, [("late.png", image, "image/png")], content="3rd")
    assert flooded.status == 422, await flooded.text()
    assert await _objects(endpoint, name) == objects
    assert await count_rows(client) == (2, 2)

    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"]["storage"] == "ok"
    metrics = await (await client.get("/metrics")).text()
    # Five puts: the three kept, and the two of the refused write (deleted again).
    assert "chat_attachment_files_stored_total 5.0" in metrics
    assert "chat_attachment_uploads_refused_total 1.0" in metrics


async def test_readyz_fails_when_the_store_is_unreachable(
    db_url: str, tmp_path: Any, aiohttp_client: Any, s3_endpoint: str
) -> None:
    """A bucket that does not exist (the store answers, but not for us) is not ready."""
    settings = make_settings(
        db_url,
        tmp_path,
        storage_url="s3://missing-bucket",
        s3_endpoint_url=s3_endpoint,
        s3_path_style=True,
        s3_access_key_id="k",
        s3_secret_access_key="s",
        health_timeout=5.0,
    )
    client = await aiohttp_client(create_app(settings))
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["failed"] == ["storage"]
