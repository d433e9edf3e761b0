"""Takes the README's screenshot (docs/screenshot.png): the visitor's page and the agent
console side by side, in the middle of a live conversation, captured by the same headless
Chromium the other browser tests use."""

from __future__ import annotations

import base64
import os
import struct
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import (
    DemoServer,
    Pages,
    call,
    open_console,
    open_widget,
    widget_auth_token,
    widget_conversation_id,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
README_SHOT = DOCS / "screenshot.png"
PHONE_SHOT = DOCS / "screenshot-phone.png"
HEIGHT = 640
PHONE = (390, 844)


def _out(tmp_path: Path, readme_copy: Path = README_SHOT) -> Path:
    """The README's copy is rewritten only on request (UPDATE_SCREENSHOT=1), so a test run
    leaves the checkout clean."""
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        return readme_copy
    return tmp_path / readme_copy.name


def _say(page: Any, selector: str, text: str) -> None:
    page.fill(selector, text)
    page.keyboard.press("Enter")


def test_readme_screenshot(sqlite_demo_server: DemoServer, pages: Pages, tmp_path: Path) -> None:
    server = sqlite_demo_server
    other = open_widget(pages.new(700, HEIGHT), server)
    _say(other, ".cw-input", "Is the Colombia blend available decaf?")
    widget_conversation_id(other)

    agent = open_console(pages.new(1040, HEIGHT), server)
    visitor = open_widget(pages.new(700, HEIGHT), server)
    expect(visitor.locator(".cw-presence")).to_have_text("We are online")
    _say(visitor, ".cw-input", "Hi! Do you ship to Norway?")
    cid = widget_conversation_id(visitor)
    agent.locator(f'.conv-item[data-id="{cid}"]').click()
    _say(agent, ".reply-input", "Yes! Orders to Norway arrive in 3 to 5 days.")
    expect(visitor.locator(".cw-theirs")).to_have_count(1)

    # A voice call follows: its transcript turns land in both views, styled apart.
    auth = {"X-Auth-Token": widget_auth_token(visitor)}
    path = f"/api/v1/widget/conversations/voice_transcript?website_token={server.website_token}"
    call(server, "POST", path, {"source": "user", "content": "Which beans for espresso?"}, auth)
    call(server, "POST", path, {"source": "ai", "content": "Our Sidamo, roasted today."}, auth)
    expect(visitor.locator(".cw-voice")).to_have_count(2)
    expect(agent.locator(".voice")).to_have_count(2)

    agent.check(".private-toggle")
    _say(agent, ".reply-input", "Repeat customer: offer free shipping.")
    agent.uncheck(".private-toggle")
    expect(agent.locator(".message.note")).to_have_count(1)
    _say(agent, ".reply-input", "Shipping is on us today.")
    expect(visitor.locator(".cw-theirs")).to_have_count(3)
    expect(agent.locator(".receipt")).to_have_text("Seen")

    # Caught mid-reply: the visitor sees the agent typing.
    agent.locator(".reply-input").press_sequentially("Would you like a grinder too")
    expect(visitor.locator(".cw-typing")).to_be_visible()
    left = visitor.screenshot()
    right = agent.screenshot()

    out = _out(tmp_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_side_by_side(pages.new(1780, HEIGHT + 60), left, right))
    width, height = _png_size(out.read_bytes())
    assert (width, height) == (1780, HEIGHT + 60)


def test_readme_phone_screenshot(
    sqlite_demo_server: DemoServer, pages: Pages, tmp_path: Path
) -> None:
    """docs/screenshot-phone.png: the widget full screen on a phone, and the console on a
    phone, with the conversation open (one pane, the back button)."""
    server = sqlite_demo_server
    agent = open_console(pages.new(*PHONE), server)
    visitor = open_widget(pages.new(*PHONE), server)
    _say(visitor, ".cw-input", "Hi! Is the Sidamo good for a moka pot?")
    cid = widget_conversation_id(visitor)
    agent.locator(f'.conv-item[data-id="{cid}"] .conv-open').click()
    _say(
        agent,
        ".reply-input",
        "It is! Grind it a bit finer than for filter:\nhttps://example.com/moka",
    )
    expect(visitor.locator(".cw-theirs .msg-link")).to_have_count(1)
    _say(visitor, ".cw-input", "Perfect, thanks 👍")
    expect(agent.locator(".message.from-visitor")).to_have_count(2)
    expect(agent.locator(".receipt")).to_have_text("Seen")
    left, right = visitor.screenshot(), agent.screenshot()

    out = _out(tmp_path, PHONE_SHOT)
    out.write_bytes(
        _side_by_side(pages.new(2 * PHONE[0] + 40, PHONE[1] + 60), left, right, ("/", "/console"))
    )
    assert _png_size(out.read_bytes()) == (2 * PHONE[0] + 40, PHONE[1] + 60)


def _side_by_side(
    page: Any,
    left: bytes,
    right: bytes,
    captions: tuple[str, str] = ("Visitor: /", "Agent: /console"),
) -> bytes:
    """Lays the two captures out on one page and captures that."""

    def img(png: bytes) -> str:
        return f"data:image/png;base64,{base64.b64encode(png).decode()}"

    page.set_content(
        f"""<!doctype html><html><body style="margin:0;background:#d9dee6;
        font:600 14px system-ui,sans-serif;color:#3c4858">
        <div style="display:flex;gap:20px;padding:10px 10px 0">
          <figure style="margin:0"><figcaption style="padding:0 0 8px">{captions[0]}</figcaption>
            <img src="{img(left)}" style="display:block;border-radius:6px"></figure>
          <figure style="margin:0"><figcaption style="padding:0 0 8px">{captions[1]}</figcaption>
            <img src="{img(right)}" style="display:block;border-radius:6px"></figure>
        </div></body></html>"""
    )
    page.wait_for_function("() => [...document.images].every((i) => i.complete)")
    return page.screenshot()


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])
