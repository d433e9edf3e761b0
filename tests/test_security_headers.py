"""What browsers are told they may do with our answers, over real HTTP on both databases:
no page of ours can be framed by another site (the agent console was: clickjacking), nothing
is MIME-sniffed, referrers carry no path, and the widget page stays frameable by the
inbox's own site, since it lives in an iframe there."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.security_headers import frame_ancestors
from server.services import SERVICES
from server.store import accounts as accounts_store
from tests.conftest import Visitor, World

NO_FRAMES = "frame-ancestors 'none'"
REFERRER = "strict-origin-when-cross-origin"


def assert_not_frameable(resp: Any) -> None:
    where = f"{resp.method} {resp.url.path}"
    assert resp.headers.get("Content-Security-Policy") == NO_FRAMES, where
    assert resp.headers.get("X-Frame-Options") == "DENY", where
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", where
    assert resp.headers.get("Referrer-Policy") == REFERRER, where


async def test_console_and_demo_page_cannot_be_framed(client: TestClient, world: World) -> None:
    for path in ("/console", "/", f"/?website_token={world.inbox['website_token']}"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == "text/html"
        assert_not_frameable(resp)
    resp = await client.get("/?website_token=nope")  # the page's own 404
    assert resp.status == 404
    assert_not_frameable(resp)


async def test_static_files_are_not_sniffed(client: TestClient) -> None:
    for name, kind in (
        ("console.js", "javascript"),
        ("widget-frame.js", "javascript"),
        ("widget.css", "text/css"),
    ):
        resp = await client.get(f"/static/{name}")
        assert resp.status == 200, name
        assert kind in resp.content_type, (name, resp.content_type)  # nosniff needs it right
        assert_not_frameable(resp)
    resp = await client.get("/static/../server/settings.py")
    assert resp.status in (403, 404)
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"


async def test_api_answers_are_not_sniffed(client: TestClient, world: World) -> None:
    """JSON answers, good and bad, widget and agent: a browser never reads them as HTML."""
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    await visitor.send("hello")
    token = world.agent["access_token"]
    answers = [
        await visitor.get("messages"),
        await visitor.post("messages", {"message": 5}),  # 400
        await client.get("/api/v1/widget/messages?website_token=nope"),  # 404
        await client.get("/api/v1/profile", headers={"api_access_token": token}),
        await client.get("/api/v1/profile"),  # 401
        await client.get("/no/such/route"),  # 404 from the router
    ]
    for resp in answers:
        assert resp.content_type == "application/json", resp.url
        assert_not_frameable(resp)


async def make_inbox(client: TestClient, website_url: str | None) -> dict[str, Any]:
    async def op(conn: Any) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Framed")
        return await accounts_store.create_inbox(
            conn, account_id=account["id"], name="Site", website_url=website_url
        )

    return await client.app[SERVICES].db.write(op)


async def widget_page(client: TestClient, inbox: dict[str, Any]) -> Any:
    resp = await client.get(f"/widget?website_token={inbox['website_token']}")
    assert resp.status == 200, await resp.text()
    assert "X-Frame-Options" not in resp.headers  # it cannot name an origin: never on /widget
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    assert resp.headers.get("Referrer-Policy") == REFERRER
    return resp


@pytest.mark.parametrize(
    ("website_url", "policy"),
    [
        ("https://shop.example.com", "frame-ancestors 'self' https://shop.example.com"),
        # The origin, not the URL: a path or query would not match the framing page.
        ("https://shop.example.com/p/a?q=1#x", "frame-ancestors 'self' https://shop.example.com"),
        ("https://Shop.Example.com:8443/", "frame-ancestors 'self' https://shop.example.com:8443"),
        ("shop.example.com", "frame-ancestors 'self' shop.example.com"),
        ("http://localhost:8080", "frame-ancestors 'self' http://localhost:8080"),
        ("https://bücher.de/", "frame-ancestors 'self' https://xn--bcher-kva.de"),
    ],
)
async def test_widget_is_frameable_by_its_site(
    client: TestClient, website_url: str, policy: str
) -> None:
    inbox = await make_inbox(client, website_url)
    resp = await widget_page(client, inbox)
    assert resp.headers.get("Content-Security-Policy") == policy


async def test_widget_without_a_site_is_frameable_by_any(client: TestClient) -> None:
    for website_url in (None, ""):
        inbox = await make_inbox(client, website_url)
        resp = await widget_page(client, inbox)
        assert "Content-Security-Policy" not in resp.headers


@pytest.mark.parametrize(
    "website_url",
    [
        "https://a.example; script-src *",  # would add a directive
        "https://a.example\r\nX-Evil: 1",  # was a 500 (aiohttp refuses the header)
        "https://a.example'",
        "javascript:alert(1)",
        "ftp://a.example",
        "https://user:pw@a.example",
        "a b.example",
    ],
)
async def test_widget_with_an_unusable_site_url(
    client: TestClient, website_url: str, caplog: Any
) -> None:
    """An admin's typo never reaches the header as it is (it could add directives): the
    page stays usable, unrestricted, and the log says what to fix."""
    caplog.set_level(logging.WARNING)
    frame_ancestors.cache_clear()  # it warns once per URL
    inbox = await make_inbox(client, website_url)
    resp = await widget_page(client, inbox)
    assert "Content-Security-Policy" not in resp.headers
    assert "website_url" in caplog.text and "https://" in caplog.text
