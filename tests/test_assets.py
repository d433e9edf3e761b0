"""The images Chatwoot's widget loads from our origin (the bot avatar, the footer's logo) are
served, with caching and validators; the widget's globalConfig points at the logo."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from server.images import ASSETS
from tests.conftest import World


async def test_every_asset_is_served_with_cache_headers(client: TestClient) -> None:
    for path, (_, content_type) in ASSETS.items():
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == content_type
        assert "max-age=86400" in resp.headers["Cache-Control"]
        body = await resp.read()
        if content_type == "image/png":
            assert body.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert body.startswith(b"<svg") and b"<script" not in body
        etag = resp.headers["ETag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status == 304
        assert await again.read() == b""
        stale = await client.get(path, headers={"If-None-Match": '"other"'})
        assert stale.status == 200


async def test_the_bot_avatar_path_the_widget_uses(client: TestClient) -> None:
    resp = await client.get("/assets/images/chatwoot_bot.png")
    assert resp.status == 200
    assert resp.content_type == "image/png"
    assert (await client.get("/assets/images/other.png")).status == 404


async def test_the_widget_page_points_its_footer_logo_at_a_served_image(
    client: TestClient, world: World
) -> None:
    resp = await client.get(f"/widget?website_token={world.inbox['website_token']}")
    assert resp.status == 200
    page = await resp.text()
    logo = re.search(r'"LOGO_THUMBNAIL":"([^"]+)"', page)
    assert logo is not None
    served = await client.get(logo.group(1))
    assert served.status == 200
    assert served.content_type == "image/svg+xml"
