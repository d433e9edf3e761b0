"""Accessibility, in headless Chromium: axe-core (tests/js, pinned) finds no serious or
critical violation on the demo page (widget closed and open), the widget's iframe page and
the signed-in console with a conversation open, at desktop and phone sizes; and the widget
and the console work from the keyboard alone."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    DemoServer,
    Pages,
    agent_call,
    open_console,
    open_widget,
    widget_conversation_id,
)

AXE = Path(__file__).resolve().parents[1] / "js" / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def axe_problems(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` in tests/js")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 6).map((n) => `${n.target.join(" ")}: ${n.failureSummary}`),
            }));
        }"""
    )
    problems = [v for v in found if v["impact"] in ("serious", "critical")]
    if problems:
        print(page.url, problems)
    return problems


def _conversation(server: DemoServer, pages: Pages) -> int:
    """A conversation with a visitor message, a reply with a link, and a private note."""
    visitor = open_widget(pages.new(), server)
    visitor.fill(".cw-input", f"Hello, see https://example.com/a [{uuid.uuid4().hex[:6]}]")
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    reply = {"content": "Hi!\nHow can I help?"}
    agent_call(server, "POST", f"/conversations/{cid}/messages", reply)
    agent_call(
        server, "POST", f"/conversations/{cid}/messages", {"content": "note", "private": True}
    )
    return cid


@pytest.mark.parametrize("size", SIZES)
def test_axe_finds_no_serious_violation(demo_server: DemoServer, pages: Pages, size: str) -> None:
    width, height = SIZES[size]
    cid = _conversation(demo_server, pages)

    # The demo page: the widget closed (launcher only), then open with a conversation.
    page = open_widget(pages.new(width, height), demo_server, open_panel=False)
    expect(page.locator(".cw-launcher")).to_be_visible()
    assert axe_problems(page) == []
    page.click(".cw-launcher")
    page.fill(".cw-input", "A question with a link: https://example.com/x")
    page.keyboard.press("Enter")
    expect(page.locator(".cw-mine:not(.cw-pending) .msg-link")).to_have_count(1)
    page.click(".cw-emoji-toggle")
    expect(page.locator(".cw-emoji-panel")).to_be_visible()
    assert axe_problems(page) == []

    # The widget's iframe page, as Chatwoot's SDK opens it.
    frame = pages.new(width, height)
    frame.goto(f"{demo_server.url}/widget?website_token={demo_server.website_token}")
    frame.wait_for_selector(".cw-root.cw-embedded[data-connection=connected]")
    assert axe_problems(frame) == []

    # The console: the sign-in form, then signed in with the conversation open.
    console = pages.new(width, height)
    console.goto(demo_server.url + "/console")
    console.wait_for_selector(".signin-token")
    # The hint names the command as code, not between literal backticks.
    expect(console.locator("#signin-hint code")).to_have_text("python -m server")
    assert "`" not in console.locator("#signin-hint").inner_text()
    expect(console.get_by_label("Access token")).to_be_focused()
    assert axe_problems(console) == []
    open_console(console, demo_server)
    console.locator(f'.conv-item[data-id="{cid}"] .conv-open').click()
    expect(console.locator(".message .msg-link")).to_have_count(1)
    expect(console.locator(".message.note")).to_have_count(1)
    assert axe_problems(console) == []


def _focused(page: Any) -> str:
    """The focused element: its tag, then its class."""
    script = "() => `${document.activeElement.tagName}.${document.activeElement.className}`"
    return str(page.evaluate(script))


def _has_focus_ring(page: Any) -> bool:
    return bool(
        page.evaluate(
            """() => {
                const s = getComputedStyle(document.activeElement);
                return s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2;
            }"""
        )
    )


@pytest.mark.parametrize("size", SIZES)
def test_widget_by_keyboard(demo_server: DemoServer, pages: Pages, size: str) -> None:
    """Tab reaches the launcher, Enter opens the widget with the caret in the message box,
    Enter sends, Escape closes it and gives the focus back to the launcher."""
    page = open_widget(pages.new(*SIZES[size]), demo_server, open_panel=False)
    launcher = page.locator(".cw-launcher")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    for _ in range(10):  # the demo page's links come first
        page.keyboard.press("Tab")
        if _focused(page).startswith("BUTTON.cw-launcher"):
            break
    assert _focused(page).startswith("BUTTON.cw-launcher")
    assert _has_focus_ring(page)
    page.keyboard.press("Enter")
    expect(page.locator(".cw-input")).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "true")

    text = f"Typed without a mouse [{uuid.uuid4().hex[:6]}]"
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    expect(page.locator(".cw-mine .text")).to_have_text([text])
    # Every control of the open widget can be reached with Tab and shows where focus is.
    page.keyboard.press("Shift+Tab")
    assert _focused(page).startswith("BUTTON.cw-attach")
    assert _has_focus_ring(page)

    page.keyboard.press("Escape")
    expect(page.locator(".cw-panel")).to_be_hidden()
    expect(launcher).to_be_focused()
    page.keyboard.press("Space")
    expect(page.locator(".cw-input")).to_be_focused()


@pytest.mark.parametrize("size", SIZES)
def test_console_by_keyboard(demo_server: DemoServer, pages: Pages, size: str) -> None:
    """Tab reaches a conversation in the list, Enter (or Space) opens it with the caret in
    the reply box, Enter sends; the message log is a polite live region."""
    cid = _conversation(demo_server, pages)
    console = open_console(pages.new(*SIZES[size]), demo_server)
    item = console.locator(f'.conv-item[data-id="{cid}"] .conv-open')
    expect(item).to_be_visible()
    for _ in range(40):
        console.keyboard.press("Tab")
        if console.evaluate(
            f"() => document.activeElement.closest('.conv-item')?.dataset.id === '{cid}'"
        ):
            break
    expect(item).to_be_focused()
    assert _has_focus_ring(console)
    # The list re-renders on every event: the focus stays on the conversation.
    agent_call(demo_server, "POST", f"/conversations/{cid}/messages", {"content": "Moved up"})
    expect(item.locator(".snippet")).to_have_text("↩ Moved up")
    expect(item).to_be_focused()
    console.keyboard.press("Space" if size == "phone" else "Enter")
    reply = console.locator(".reply-input")
    expect(reply).to_be_focused()
    log = console.locator(".messages")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(log.locator(".message")).to_have_count(4)

    answer = f"Answered from the keyboard [{uuid.uuid4().hex[:6]}]"
    console.keyboard.type(answer)
    console.keyboard.press("Enter")
    expect(console.locator(".message.from-agent .text").last).to_have_text(answer)
    messages = agent_call(demo_server, "GET", f"/conversations/{cid}/messages")["payload"]
    assert messages[-1]["content"] == answer
