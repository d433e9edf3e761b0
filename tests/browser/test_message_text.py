"""Message text, in headless Chromium against a real server: links become safe links
(http, https, mailto only; never javascript: or data:; a new tab without opener or
referrer), markup stays text, line breaks stay, in the widget and the console; the emoji
pickers insert into the composer; and the widget's header tells agent presence and the
connection apart."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    DemoServer,
    Pages,
    open_console,
    open_widget,
    widget_conversation_id,
)

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}

TRICKY = (
    "Line one\n"
    "see https://example.com/a?b=1&c=2. or (www.example.org/x)\n"
    "write to help@example.com, or mailto:sales@example.com\n"
    "javascript:alert(1) JavaScript://x.test/%0Aalert(1) data:text/html,<script>alert(1)</script>\n"
    "<b>not bold</b> <a href='https://evil.test'>fake</a>"
)
LINKS = [
    ("https://example.com/a?b=1&c=2", "https://example.com/a?b=1&c=2"),
    ("www.example.org/x", "https://www.example.org/x"),
    ("help@example.com", "mailto:help@example.com"),
    ("mailto:sales@example.com", "mailto:sales@example.com"),
    # The address inside markup that stays text is a plain link like any other.
    ("https://evil.test", "https://evil.test/"),
]


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:6]}]"


def check_text(bubble: Any, marker: str) -> None:
    """`bubble` shows TRICKY (+ marker): five safe links, nothing else clickable, markup as
    text, line breaks on screen."""
    links = bubble.locator("a")
    expect(links).to_have_count(len(LINKS))
    for i, (shown, href) in enumerate(LINKS):
        expect(links.nth(i)).to_have_text(shown)
        expect(links.nth(i)).to_have_attribute("href", href)
        expect(links.nth(i)).to_have_attribute("target", "_blank")
        expect(links.nth(i)).to_have_attribute("rel", "noopener noreferrer")
    assert bubble.locator("b, script").count() == 0
    rendered = bubble.evaluate("(node) => node.innerText")
    assert rendered == TRICKY + marker  # every line break kept, markup shown as typed
    assert bubble.evaluate("(node) => getComputedStyle(node.parentElement).whiteSpace") == (
        "pre-wrap"
    )


def test_the_widget_says_presence_and_connection_apart(
    demo_server: DemoServer, pages: Pages
) -> None:
    """First in the module: no agent has a console open on this server yet."""
    away = open_widget(pages.new(), demo_server)
    presence = away.locator(".cw-presence")
    expect(presence).to_have_text("We are away, leave a message")
    expect(away.locator(".cw-root")).to_have_attribute("data-presence", "away")
    expect(away.locator(".cw-connection")).to_be_hidden()  # connected: nothing to say

    open_console(pages.new(), demo_server)
    here = open_widget(pages.new(), demo_server)
    expect(here.locator(".cw-presence")).to_have_text("We are online")
    expect(here.locator(".cw-root")).to_have_attribute("data-presence", "online")

    # The socket goes: the connection line says so, the presence line stays what it was.
    here.evaluate("() => { const c = window.chatWidget.cable; c.stopped = true; c.ws.close(); }")
    expect(here.locator(".cw-connection")).to_have_text("Offline: messages will not arrive")
    expect(here.locator(".cw-presence")).to_have_text("We are online")
    here.evaluate("() => { const c = window.chatWidget.cable; c.stopped = false; c.connect(); }")
    expect(here.locator(".cw-connection")).to_be_hidden()


@pytest.mark.parametrize("size", SIZES)
def test_links_and_line_breaks_in_both_views(
    demo_server: DemoServer, pages: Pages, size: str
) -> None:
    width, height = SIZES[size]
    visitor = open_widget(pages.new(width, height), demo_server)
    marker = f" [{uuid.uuid4().hex[:6]}]"
    visitor.fill(".cw-input", TRICKY + marker)
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    check_text(visitor.locator(".cw-mine:not(.cw-pending) .text"), marker)

    console = open_console(pages.new(width, height), demo_server)
    console.locator(f'.conv-item[data-id="{cid}"] .conv-open').click()
    check_text(console.locator(".message.from-visitor .text"), marker)
    assert console.locator('a[href^="javascript:" i], a[href^="data:" i]').count() == 0

    # The agent's reply with a link and two lines reaches the visitor the same way.
    console.fill(".reply-input", "Tracking: https://track.example.com/123\nThanks!")
    console.keyboard.press("Enter")
    reply = visitor.locator(".cw-theirs .text")
    expect(reply.locator("a")).to_have_attribute("href", "https://track.example.com/123")
    assert reply.evaluate("(node) => node.innerText") == (
        "Tracking: https://track.example.com/123\nThanks!"
    )


def test_linkify_cases(demo_server: DemoServer, pages: Pages) -> None:
    """linkify.js on its own, in the page: what becomes a link and what does not."""
    page = pages.new()
    page.goto(demo_server.url + "/console")
    cases = page.evaluate(
        """async () => {
            const { linkify, safeHref } = await import("/static/linkify.js");
            const links = (text) => linkify(text)
                .filter((n) => n.nodeName === "A").map((a) => [a.textContent, a.href]);
            return {
                wiki: links("see https://en.wikipedia.org/wiki/Foo_(bar)."),
                paren: links("(https://x.test/a)"),
                upper: links("HTTPS://X.TEST/A"),
                none: links("javascript:alert(1) vbscript:x data:x file:///etc/passwd ftp://x.test"),
                spoof: safeHref("javascript://%0Aalert(1)"),
                long: linkify("https://x.test ".repeat(2000)).length,
            };
        }"""
    )
    assert cases["wiki"] == [
        ["https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)"]
    ]
    assert cases["paren"] == [["https://x.test/a", "https://x.test/a"]]
    assert cases["upper"] == [["HTTPS://X.TEST/A", "https://x.test/A"]]
    assert cases["none"] == []
    assert cases["spoof"] is None
    assert cases["long"] == 1  # past 20,000 characters: plain text, one node


@pytest.mark.parametrize("size", SIZES)
def test_emoji_pickers(demo_server: DemoServer, pages: Pages, size: str) -> None:
    """The demo inbox's widget config has the emoji_picker feature: the widget offers the
    picker; the console always does. A pick goes in at the caret; Escape closes the grid,
    not the widget."""
    width, height = SIZES[size]
    visitor = open_widget(pages.new(width, height), demo_server)
    features = visitor.evaluate("() => window.chatWidget.config.enabled_features")
    assert "emoji_picker" in features
    visitor.fill(".cw-input", "Great ")
    toggle = visitor.locator(".cw-emoji-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(visitor.locator(".cw-emoji").first).to_be_focused()
    visitor.keyboard.press("Escape")
    expect(visitor.locator(".cw-emoji-panel")).to_be_hidden()
    expect(visitor.locator(".cw-panel")).to_be_visible()
    expect(toggle).to_be_focused()
    toggle.click()
    visitor.get_by_role("button", name="thumbs up").click()
    expect(visitor.locator(".cw-emoji-panel")).to_be_hidden()
    expect(visitor.locator(".cw-input")).to_have_value("Great 👍")
    expect(visitor.locator(".cw-input")).to_be_focused()
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    expect(visitor.locator(".cw-mine .text")).to_have_text(["Great 👍"])

    console = open_console(pages.new(width, height), demo_server)
    console.locator(f'.conv-item[data-id="{cid}"] .conv-open').click()
    expect(console.locator(".message.from-visitor .text")).to_have_text(["Great 👍"])
    console.fill(".reply-input", "Thanks")
    console.locator(".emoji-toggle").click()
    console.get_by_role("button", name="party popper").click()
    expect(console.locator(".reply-input")).to_have_value("Thanks🎉")
    console.keyboard.press("Enter")
    expect(visitor.locator(".cw-theirs .text")).to_have_text(["Thanks🎉"])


def test_no_emoji_picker_without_the_feature(demo_server: DemoServer, pages: Pages) -> None:
    """A config without emoji_picker (as an inbox could answer it) gets no picker button."""
    page = pages.new()

    def drop_feature(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        features = body["website_channel_config"]["enabled_features"]
        body["website_channel_config"]["enabled_features"] = [
            f for f in features if f != "emoji_picker"
        ]
        route.fulfill(response=answer, json=body)

    page.route("**/api/v1/widget/config?*", drop_feature)
    open_widget(page, demo_server)
    expect(page.locator(".cw-input")).to_be_visible()
    expect(page.locator(".cw-emoji-toggle")).to_have_count(0)
