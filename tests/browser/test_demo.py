"""End to end, in headless Chromium: the demo widget (/) and the agent console (/console)
against a real `python -m server`, talking only through the widget API, the agent API and
/cable. Each test uses fresh browser contexts, so each visitor is a new contact."""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

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
    widget_auth_token,
    widget_conversation_id,
)


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:6]}]"


def test_visitor_and_agent_chat_live(demo_server: DemoServer, pages: Pages, agent: Any) -> None:
    visitor = open_widget(pages.new(), demo_server)

    # The visitor writes; the conversation appears in the agent's list without a reload,
    # unread and open.
    hello = unique("Hello, do you ship to Norway?")
    visitor.fill(".cw-input", hello)
    visitor.keyboard.press("Enter")
    expect(visitor.locator(".cw-mine .cw-bubble").last).to_have_text(hello)
    cid = widget_conversation_id(visitor)
    item = agent.locator(f'.conv-item[data-id="{cid}"]')
    expect(item).to_contain_text(hello)
    expect(item.locator(".badge")).to_have_text("1")
    expect(item.locator(".pill")).to_have_text("open")

    # The agent opens it: history, and the unread badge goes.
    item.click()
    expect(agent.locator(".message.from-visitor .text")).to_have_text([hello])
    expect(item.locator(".badge")).to_have_count(0)

    # The visitor types: the agent sees it in the view and in the list.
    visitor.locator(".cw-input").press_sequentially("Also")
    expect(agent.locator(".typing")).to_have_text(re.compile(r"is typing"))
    expect(item.locator(".snippet")).to_have_text("typing…")
    visitor.fill(".cw-input", "")

    # The agent types: the visitor sees the indicator.
    agent.locator(".reply-input").press_sequentially("Yes")
    expect(visitor.locator(".cw-typing")).to_have_text("Demo Agent is typing…")

    # The agent replies: the visitor sees it and the indicator goes; the visitor has the
    # widget open, so the agent soon sees the reply as seen.
    reply = unique("Yes, we do: 3 to 5 days.")
    agent.fill(".reply-input", reply)
    agent.keyboard.press("Enter")
    expect(visitor.locator(".cw-theirs .text")).to_have_text([reply])
    expect(visitor.locator(".cw-typing")).to_be_hidden()
    expect(agent.locator(".receipt")).to_have_text("Seen")

    # A private note stays with the agents: the visitor gets the next public reply only.
    note = unique("VIP customer, offer free shipping")
    agent.check(".private-toggle")
    agent.fill(".reply-input", note)
    agent.keyboard.press("Enter")
    expect(agent.locator(".message.note .text")).to_have_text([note])
    agent.uncheck(".private-toggle")
    again = unique("Anything else?")
    agent.fill(".reply-input", again)
    agent.keyboard.press("Enter")
    expect(visitor.locator(".cw-theirs .text")).to_have_text([reply, again])
    expect(visitor.get_by_text(note)).to_have_count(0)

    # The visitor reloads and keeps the contact and the conversation.
    token_before = visitor.evaluate("() => window.chatWidget.pubsubToken")
    visitor.reload()
    visitor.wait_for_selector(".cw-root[data-connection=connected]")
    expect(visitor.locator(".cw-list .text")).to_have_text([hello, reply, again])
    assert widget_conversation_id(visitor) == cid
    assert visitor.evaluate("() => window.chatWidget.pubsubToken") == token_before

    # The agent resolves: the visitor sees the conversation end.
    agent.click(".view-header .resolve")
    expect(visitor.locator(".cw-ended")).to_be_visible()
    expect(visitor.locator(".cw-composer")).to_be_hidden()
    expect(item.locator(".pill")).to_have_text("resolved")
    expect(agent.locator(".view-header .reopen")).to_be_visible()

    # The visitor starts a new conversation; it reaches the agent's list live.
    visitor.click(".cw-new")
    expect(visitor.locator(".cw-list .cw-message")).to_have_count(0)
    fresh = unique("One more question")
    visitor.fill(".cw-input", fresh)
    visitor.keyboard.press("Enter")
    expect(visitor.locator(".cw-mine .cw-bubble")).to_have_text([fresh])
    visitor.wait_for_function(f"() => window.chatWidget.conv.id !== {cid}")
    new_cid = widget_conversation_id(visitor)
    expect(agent.locator(f'.conv-item[data-id="{new_cid}"]')).to_contain_text(fresh)


def test_visitor_ends_the_conversation_and_the_agent_reopens_it(
    demo_server: DemoServer, pages: Pages, agent: Any
) -> None:
    """The demo inbox lets visitors end conversations (end_conversation is enabled)."""
    visitor = open_widget(pages.new(), demo_server)
    expect(visitor.locator(".cw-end")).to_be_hidden()  # nothing to end yet
    visitor.fill(".cw-input", unique("Thanks, bye"))
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    item = agent.locator(f'.conv-item[data-id="{cid}"]')
    expect(item.locator(".pill")).to_have_text("open")

    visitor.click(".cw-end")
    expect(visitor.locator(".cw-ended")).to_be_visible()
    expect(item.locator(".pill")).to_have_text("resolved")

    item.click()
    agent.click(".view-header .reopen")
    expect(visitor.locator(".cw-ended")).to_be_hidden()
    expect(visitor.locator(".cw-composer")).to_be_visible()
    expect(item.locator(".pill")).to_have_text("open")
    later = unique("Actually, one more thing")
    visitor.fill(".cw-input", later)
    visitor.keyboard.press("Enter")
    expect(agent.locator(".message.from-visitor .text").last).to_have_text(later)


def test_widget_catches_up_after_a_reconnect(demo_server: DemoServer, pages: Pages) -> None:
    visitor = open_widget(pages.new(), demo_server)
    visitor.fill(".cw-input", unique("Are you there?"))
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    expect(visitor.locator(".cw-mine .cw-pending")).to_have_count(0)

    # Once its socket has had an event (the visitor's own message) it has a stream position
    # to resume from (without one, nor a ping's server time yet, it would refetch): take the
    # socket away, reply while it is gone, then let it come back.
    cut_widget_socket(visitor)
    missed = unique("Sorry, I was away")
    agent_call(demo_server, "POST", f"/conversations/{cid}/messages", {"content": missed})
    expect(visitor.get_by_text(missed)).to_have_count(0)

    fetched: list[str] = []
    visitor.on("request", lambda r: "/messages?" in r.url and fetched.append(r.url))
    restore_widget_socket(visitor)
    expect(visitor.locator(".cw-theirs .text")).to_have_text([missed])
    # It resumed (extended protocol: session restored, the missed message from the stream's
    # history), so it fetched nothing over HTTP.
    assert visitor.evaluate("() => window.chatWidget.cable.ext") is True
    assert not [url for url in fetched if "after=" in url], fetched


def test_voice_turns_are_styled_apart(demo_server: DemoServer, pages: Pages, agent: Any) -> None:
    visitor = open_widget(pages.new(), demo_server)
    typed = unique("I'd rather talk")
    visitor.fill(".cw-input", typed)
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    agent.locator(f'.conv-item[data-id="{cid}"]').click()
    expect(agent.locator(".message .text")).to_have_text([typed])

    # Two turns of a voice call, as the widget's voice client posts them.
    auth = {"X-Auth-Token": widget_auth_token(visitor)}
    path = (
        f"/api/v1/widget/conversations/voice_transcript?website_token={demo_server.website_token}"
    )
    said, answered = unique("What is your best espresso?"), unique("Our Sidamo, freshly roasted.")
    call(demo_server, "POST", path, {"source": "user", "content": said}, auth)
    call(demo_server, "POST", path, {"source": "ai", "content": answered}, auth)

    for page, voice_class in ((visitor, ".cw-voice"), (agent, ".voice")):
        turns = page.locator(voice_class)
        expect(turns.locator(".text")).to_have_text([said, answered])
        expect(turns.locator(".voice-tag")).to_have_text(["Visitor · voice", "AI agent · voice"])
    expect(visitor.locator(".cw-message:not(.cw-voice) .text")).to_have_text([typed])
    expect(agent.locator(".message:not(.voice) .text")).to_have_text([typed])


def test_console_shows_a_live_voice_call(demo_server: DemoServer, pages: Pages, agent: Any) -> None:
    """A call's heartbeat starts it, the agent console shows "on a voice call" (list and
    header) from conversation.updated, and the badge goes when the call ends."""
    visitor = open_widget(pages.new(), demo_server)
    visitor.fill(".cw-input", unique("Calling you"))
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)
    agent.locator(f'.conv-item[data-id="{cid}"]').click()
    badge = agent.locator(".pill.on-call")
    expect(badge).to_have_count(0)

    auth = {"X-Auth-Token": widget_auth_token(visitor)}
    base = f"/api/v1/widget/conversations/{{}}?website_token={demo_server.website_token}"
    call(demo_server, "POST", base.format("voice_heartbeat"), {}, auth)
    expect(badge).to_have_count(2)  # in the list and in the open conversation's header
    expect(badge.first).to_have_text("on a voice call")
    call(demo_server, "POST", base.format("voice_call_ended"), {}, auth)
    expect(badge).to_have_count(0)


def test_widget_iframe_page_boots_from_its_globals(demo_server: DemoServer, pages: Pages) -> None:
    """GET /widget (Chatwoot's iframe page) loads /static/widget-frame.js."""
    page = pages.new(400, 640)
    page.goto(f"{demo_server.url}/widget?website_token={demo_server.website_token}")
    page.wait_for_selector(".cw-root.cw-embedded[data-connection=connected]")
    text = unique("Sent from the iframe page")
    page.fill(".cw-input", text)
    page.keyboard.press("Enter")
    cid = widget_conversation_id(page)
    messages = agent_call(demo_server, "GET", f"/conversations/{cid}/messages")
    assert [m["content"] for m in messages["payload"]] == [text]


def test_console_refuses_a_wrong_token(demo_server: DemoServer, pages: Pages) -> None:
    page = pages.new()
    page.goto(demo_server.url + "/console")
    page.fill(".signin-token", "not-a-token")
    page.click(".signin button")
    expect(page.locator(".signin-error")).to_have_text("This access token is not valid.")
    assert page.evaluate("() => localStorage.getItem('agent-console:token')") is None


def test_widget_pages_back_through_history_on_scroll(demo_server: DemoServer, pages: Pages) -> None:
    visitor = open_widget(pages.new(), demo_server)
    first = unique("message 1")
    visitor.fill(".cw-input", first)
    visitor.keyboard.press("Enter")
    widget_conversation_id(visitor)
    auth = {"X-Auth-Token": widget_auth_token(visitor)}
    path = f"/api/v1/widget/messages?website_token={demo_server.website_token}"
    for n in range(2, 26):
        call(demo_server, "POST", path, {"message": {"content": f"message {n}"}}, auth)

    # A reload shows the newest page (20); scrolling to the top brings the older ones in.
    visitor.reload()
    bubbles = visitor.locator(".cw-list .cw-message .text")
    expect(bubbles).to_have_count(20)
    expect(bubbles.first).to_have_text("message 6")
    visitor.locator(".cw-messages").evaluate("(box) => { box.scrollTop = 0; }")
    expect(bubbles).to_have_count(25)
    expect(bubbles.first).to_have_text(first)
    expect(bubbles.last).to_have_text("message 25")


def test_agent_can_reply_while_the_history_still_loads(
    demo_server: DemoServer, pages: Pages
) -> None:
    """What the agent types right after opening a conversation is sent, not wiped when
    the history arrives (the view used to be rebuilt then, reply box included)."""
    visitor = open_widget(pages.new(), demo_server)
    visitor.fill(".cw-input", unique("Anyone there?"))
    visitor.keyboard.press("Enter")
    cid = widget_conversation_id(visitor)

    console = open_console(pages.new(1100, 720), demo_server)
    released = threading.Event()

    def hold_history(route: Any) -> None:
        if route.request.method == "GET":
            released.wait(5)  # the real request goes out once the reply was typed
        route.continue_()

    console.route(re.compile(rf"/conversations/{cid}/messages(\?|$)"), hold_history)
    console.locator(f'.conv-item[data-id="{cid}"]').click()
    reply = unique("Right here!")
    console.fill(".reply-input", reply)
    released.set()
    expect(console.locator(".message.from-visitor")).to_have_count(1)
    console.locator(".reply-input").press("Enter")
    expect(visitor.locator(".cw-theirs .cw-bubble").last).to_have_text(reply)
