"""Notifications, in headless Chromium against a real server.

The console: the tab title counts unread visitor messages, a visitor's message in a
conversation that is not on screen plays a tone (WebAudio) and, once the agent clicked
"Enable notifications" (permission granted to the browser context), shows a desktop
notification; "Mute" silences both and survives a reload. Page-level hooks record what the
page did: every `OscillatorNode.start` (the real WebAudio node) and every `new Notification`.

The widget: closed, its launcher counts the agent's new messages and previews the latest;
opening it clears both."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    DemoServer,
    Pages,
    agent_call,
    call,
    cut_widget_socket,
    open_console,
    open_widget,
    restore_widget_socket,
    widget_conversation_id,
)

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}

# Records tones and notifications; Notification keeps the browser's real permission state
# and permission request (granted by the context), only showing is recorded instead.
HOOKS = """
window.__tones = 0;
window.__notes = [];
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  window.__tones += 1;
  return start.apply(this, args);
};
const Real = window.Notification;
class Recorded {
  constructor(title, options = {}) {
    window.__notes.push({ title, body: options.body, tag: options.tag });
    this.close = () => {};
  }
  static get permission() { return Real.permission; }
  static requestPermission(...args) { return Real.requestPermission(...args); }
}
window.Notification = Recorded;
"""


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:6]}]"


class Visitor:
    """A visitor through the widget API alone (what the widget sends), no browser."""

    def __init__(self, server: DemoServer) -> None:
        self.server = server
        self.query = f"?website_token={server.website_token}"
        answer = call(server, "POST", f"/api/v1/widget/config{self.query}", {})
        self.headers = {"X-Auth-Token": answer["website_channel_config"]["auth_token"]}

    def say(self, text: str) -> int:
        msg = call(
            self.server,
            "POST",
            f"/api/v1/widget/messages{self.query}",
            {"message": {"content": text}},
            self.headers,
        )
        return int(msg["conversation_id"])


def console_with_hooks(pages: Pages, server: DemoServer, size: str) -> Any:
    page = pages.new(*SIZES[size])
    page.context.grant_permissions(["notifications"], origin=server.url)
    page.add_init_script(HOOKS)
    return open_console(page, server)


def tones(page: Any) -> int:
    return int(page.evaluate("() => window.__tones"))


def notes(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("() => window.__notes"))


@pytest.mark.parametrize("size", SIZES)
def test_console_title_sound_and_desktop_notifications(
    demo_server: DemoServer, pages: Pages, size: str
) -> None:
    console = console_with_hooks(pages, demo_server, size)
    # Earlier tests on this server may have left unread messages: count from there (the
    # list is loaded before the console connects).
    base = int(console.evaluate("() => window.agentConsole.unreadTotal()"))

    def title(n: int) -> str:
        return f"({base + n}) Agent console" if base + n else "Agent console"

    expect(console).to_have_title(title(0))
    enable = console.locator(".notify-enable")
    expect(enable).to_have_text("Enable notifications")

    # A visitor writes: the title counts it and a tone plays, but no desktop notification
    # before the agent asked for them.
    first, second = Visitor(demo_server), Visitor(demo_server)
    hello = unique("Hello there")
    cid = first.say(hello)
    expect(console.locator(f'.conv-item[data-id="{cid}"]')).to_contain_text(hello)
    expect(console).to_have_title(title(1))
    console.wait_for_function("() => window.__tones > 0")
    assert notes(console) == []

    # The agent enables them (the browser's permission request, granted): the next message
    # shows one, titled with the visitor and carrying the text.
    enable.click()
    expect(enable).to_be_hidden()
    again = unique("Are you there?")
    first.say(again)
    expect(console).to_have_title(title(2))
    console.wait_for_function("() => window.__notes.length === 1")
    [note] = notes(console)
    assert note["title"].startswith("New message from ")
    assert note["body"] == again
    assert note["tag"] == f"conversation-{cid}"

    # Another visitor's first message counts in the title too.
    other_text = unique("Different person")
    other = second.say(other_text)
    expect(console).to_have_title(title(3))
    console.wait_for_function("() => window.__notes.length === 2")

    # The agent opens the first conversation: its two drop out of the title; a new
    # message in it, on screen, neither rings nor notifies.
    console.locator(f'.conv-item[data-id="{cid}"] .conv-open').click()
    expect(console.locator(".message.from-visitor .text")).to_have_text([hello, again])
    expect(console).to_have_title(title(1))
    before = tones(console)
    seen = unique("Seen live")
    first.say(seen)
    expect(console.locator(".message.from-visitor .text").last).to_have_text(seen)
    expect(console).to_have_title(title(1))
    assert tones(console) == before
    assert len(notes(console)) == 2

    # Muted: the title still counts, but nothing rings and nothing pops up, and a reload
    # keeps it muted.
    mute = console.locator(".notify-mute")
    expect(mute).to_have_attribute("aria-pressed", "false")
    mute.click()
    expect(mute).to_have_attribute("aria-pressed", "true")
    expect(mute).to_have_text("Unmute")
    quiet = unique("Quietly")
    second.say(quiet)
    expect(console.locator(f'.conv-item[data-id="{other}"] .snippet')).to_have_text(quiet)
    expect(console).to_have_title(title(2))
    assert tones(console) == before
    assert len(notes(console)) == 2
    console.reload()
    console.wait_for_selector(".connection[data-state=connected]")
    expect(console.locator(".notify-mute")).to_have_attribute("aria-pressed", "true")
    expect(console.locator(".notify-enable")).to_be_hidden()  # still enabled
    console.locator(".notify-mute").click()
    expect(console.locator(".notify-mute")).to_have_attribute("aria-pressed", "false")

    # Unmuted, with the tab hidden: even the open conversation's messages notify (the
    # reload reopened it: the address keeps it).
    expect(console.locator(".message.from-visitor")).to_have_count(3)
    console.evaluate(
        """() => {
            const hidden = { get: () => "hidden", configurable: true };
            Object.defineProperty(document, "visibilityState", hidden);
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    away = unique("While you were away")
    first.say(away)
    console.wait_for_function("() => window.__notes.length === 1")  # counted since the reload
    assert notes(console)[0]["body"] == away
    expect(console).to_have_title(title(3))


def test_notifications_wait_for_the_agents_click(demo_server: DemoServer, pages: Pages) -> None:
    """Permission already granted to the site is not enough: no notification until the
    agent clicked "Enable notifications" in this console."""
    console = console_with_hooks(pages, demo_server, "desktop")
    cid = Visitor(demo_server).say(unique("Anybody?"))
    expect(console.locator(f'.conv-item[data-id="{cid}"]')).to_be_visible()
    console.wait_for_function("() => window.__tones > 0")
    assert notes(console) == []
    expect(console.locator(".notify-enable")).to_be_visible()


@pytest.mark.parametrize("size", SIZES)
def test_closed_widget_counts_and_previews_agent_messages(
    demo_server: DemoServer, pages: Pages, size: str
) -> None:
    visitor = open_widget(pages.new(*SIZES[size]), demo_server)
    visitor.fill(".cw-input", unique("Ping me when you know"))
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    launcher, badge, preview = (
        visitor.locator(".cw-launcher"),
        visitor.locator(".cw-badge"),
        visitor.locator(".cw-preview"),
    )

    # While open, agent messages just appear: no badge.
    now = unique("Looking into it")
    agent_call(demo_server, "POST", f"/conversations/{cid}/messages", {"content": now})
    expect(visitor.locator(".cw-theirs .text")).to_have_text([now])
    visitor.click(".cw-close")
    expect(visitor.locator(".cw-panel")).to_be_hidden()
    expect(badge).to_be_hidden()
    expect(preview).to_be_hidden()

    # Closed: the launcher counts them and previews the latest, with who wrote it.
    agent_call(demo_server, "POST", f"/conversations/{cid}/messages", {"content": "Found it."})
    expect(badge).to_have_text("1")
    latest = unique("Your order ships tomorrow\nwith tracking")
    agent_call(demo_server, "POST", f"/conversations/{cid}/messages", {"content": latest})
    expect(badge).to_have_text("2")
    expect(preview.locator(".cw-preview-text")).to_have_text(latest)
    expect(preview.locator(".cw-preview-who")).to_have_text("Demo Agent")
    expect(launcher).to_have_attribute("aria-label", "Open chat, 2 new messages")
    expect(launcher).to_be_visible()
    # A private note never reaches the visitor, so it never counts (events of a
    # conversation arrive in order: had it counted, the next reply would make 4).
    agent_call(
        demo_server, "POST", f"/conversations/{cid}/messages", {"content": "n", "private": True}
    )
    agent_call(demo_server, "POST", f"/conversations/{cid}/messages", {"content": "Bye"})
    expect(preview.locator(".cw-preview-text")).to_have_text("Bye")
    expect(badge).to_have_text("3")
    # Opening (here with the preview) clears both and shows the messages.
    preview.click()
    expect(visitor.locator(".cw-theirs .text")).to_have_text([now, "Found it.", latest, "Bye"])
    expect(badge).to_be_hidden()
    expect(preview).to_be_hidden()
    expect(launcher).to_have_attribute("aria-label", "Close chat")
    # Closing again starts from zero.
    visitor.keyboard.press("Escape")
    expect(badge).to_be_hidden()
    agent_call(demo_server, "POST", f"/conversations/{cid}/messages", {"content": "One more"})
    expect(badge).to_have_text("1")
    expect(preview.locator(".cw-preview-text")).to_have_text("One more")


def test_closed_widget_counts_what_it_fetched_after_a_reconnect(
    demo_server: DemoServer, pages: Pages
) -> None:
    """A reply sent while the closed widget's socket was away, fetched over HTTP (?after=)
    because the socket could not resume, counts on the launcher like a live one."""
    visitor = open_widget(pages.new(), demo_server)
    visitor.fill(".cw-input", unique("Call me back"))
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    expect(visitor.locator(".cw-mine .cw-pending")).to_have_count(0)
    visitor.click(".cw-close")
    cut_widget_socket(visitor)
    missed = unique("Back now, sorry")
    agent_call(demo_server, "POST", f"/conversations/{cid}/messages", {"content": missed})

    fetched: list[str] = []
    visitor.on("request", lambda r: "after=" in r.url and fetched.append(r.url))
    # Positions the server cannot resume from (an epoch it never had): it says so, and the
    # widget fetches what it missed over HTTP.
    visitor.evaluate(
        """() => { for (const s of window.chatWidget.cable.subscriptions.values())
            for (const [k, v] of s.positions) s.positions.set(k, { ...v, epoch: "gone" }); }"""
    )
    restore_widget_socket(visitor)
    expect(visitor.locator(".cw-badge")).to_have_text("1")
    expect(visitor.locator(".cw-preview .cw-preview-text")).to_have_text(missed)
    assert fetched, "the widget resumed instead of fetching over HTTP"
