"""Issue 19 in headless Chromium, against a real `python -m server` (SQLite: the agent API
tests cover both engines): the contact panel shows the visitor and edits their name;
"Assign to me" puts a conversation under "Mine"; search finds a conversation by message
text; the list loads its second page on scroll; Resolve and Reopen write their activity
lines. Visitors are made through the widget API (as the widget makes them), quickly."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from server.auth import identifier_hash
from tests.browser.conftest import DemoServer, Pages, agent_call, call, open_console


@pytest.fixture(scope="module")
def server(sqlite_demo_server: DemoServer) -> DemoServer:
    return sqlite_demo_server


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36"
)


class ApiVisitor:
    """A visitor of the demo inbox, through the widget API, in a Chrome on Linux."""

    def __init__(self, server: DemoServer) -> None:
        self.server = server
        cfg = self._call("POST", "config")
        self.token = cfg["website_channel_config"]["auth_token"]
        self.contact_id = cfg["contact"]["id"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"User-Agent": CHROME}
        if hasattr(self, "token"):
            headers["X-Auth-Token"] = self.token
        url = f"/api/v1/widget/{path}?website_token={self.server.website_token}"
        return call(self.server, method, url, body, headers)

    def open_conversation(self, content: str, referer: str = "") -> int:
        message = {"content": content}
        if referer:
            message["referer_url"] = referer
        return int(self._call("POST", "conversations", {"message": message})["id"])

    def patch_contact(self, **fields: Any) -> None:
        self._call("PATCH", "contact", fields)


def console(pages: Pages, server: DemoServer) -> Any:
    return open_console(pages.new(1280, 800), server)


def test_contact_panel_shows_the_visitor_and_edits_the_name(
    server: DemoServer, pages: Pages
) -> None:
    visitor = ApiVisitor(server)
    name = unique("Ada")
    visitor.patch_contact(
        name=name,
        email=f"{uuid.uuid4().hex[:8]}@calc.example",
        phone_number="+14155552671",
        identifier=unique("ada"),
        custom_attributes={"plan": "pro"},
    )
    earlier = visitor.open_conversation("first visit")
    cid = visitor.open_conversation("I need help", referer="https://shop.example/cart")
    agent = console(pages, server)
    agent.click(f'.conv-item[data-id="{cid}"]')

    panel = agent.locator(".contact-panel")
    expect(panel.locator(".contact-name dd")).to_have_text(name)
    expect(agent.locator(".view-header")).not_to_contain_text("null")
    expect(panel.locator(".contact-phone dd")).to_have_text("+14155552671")
    expect(panel.locator(".contact-email dd")).to_contain_text("@calc.example")
    expect(panel.locator(".contact-identity .pill")).to_have_text("not verified")
    expect(panel.locator(".contact-page")).to_have_text("https://shop.example/cart")
    expect(panel.locator(".contact-browser dd")).to_have_text("Chrome on Linux")
    expect(panel.locator(".contact-attributes")).to_contain_text("pro")
    expect(panel.locator(f'.contact-earlier li[data-id="{earlier}"]')).to_be_visible()

    renamed = unique("Grace")
    panel.locator(".contact-edit").click()
    panel.locator('input[name="name"]').fill(renamed)
    # A conversation.updated meanwhile (another agent assigns it) keeps what is typed.
    me = agent.evaluate("() => window.agentConsole.profile.id")
    agent_call(server, "POST", f"/conversations/{cid}/assignments", {"assignee_id": me})
    expect(agent.locator(".view-header .assign-select")).to_have_value(str(me))
    expect(panel.locator('input[name="name"]')).to_have_value(renamed)
    panel.locator('input[name="phone_number"]').fill("555")  # not E.164: refused, shown
    panel.locator(".contact-save").click()
    expect(panel.locator(".contact-error")).to_contain_text("E.164")
    panel.locator('input[name="phone_number"]').fill("+442071838750")
    panel.locator(".contact-save").click()
    expect(panel.locator(".contact-name dd")).to_have_text(renamed)
    expect(panel.locator(".contact-phone dd")).to_have_text("+442071838750")
    # The list hears contact.updated too; the API has it.
    expect(agent.locator(f'.conv-item[data-id="{cid}"] .contact')).to_have_text(renamed)
    shown = agent_call(server, "GET", f"/contacts/{visitor.contact_id}")["payload"]
    assert (shown["name"], shown["phone_number"]) == (renamed, "+442071838750")

    # Collapsible.
    panel.locator(".contact-toggle").click()
    expect(panel.locator(".contact-name")).to_have_count(0)
    panel.locator(".contact-toggle").click()
    expect(panel.locator(".contact-name dd")).to_have_text(renamed)


def hmac_token(server: DemoServer) -> str:
    """The demo inbox's HMAC key, read from the server's SQLite file (as the site's backend
    would have it: the server never sends it)."""
    path = server.process.env["DATABASE_URL"].split("///", 1)[1]
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT hmac_token FROM inboxes WHERE website_token = ?", (server.website_token,)
        ).fetchone()
    return str(row[0])


def test_contact_panel_shows_a_verified_identity(server: DemoServer, pages: Pages) -> None:
    visitor = ApiVisitor(server)
    identifier = unique("user")
    proof = identifier_hash(hmac_token(server), identifier)
    visitor._call("PATCH", "contact/set_user", {"identifier": identifier, "identifier_hash": proof})
    cid = visitor.open_conversation("signed in")
    agent = console(pages, server)
    agent.click(f'.conv-item[data-id="{cid}"]')
    identity = agent.locator(".contact-panel .contact-identity")
    expect(identity).to_contain_text(identifier)
    expect(identity.locator(".pill")).to_have_text("verified")


def test_assign_to_me_shows_under_mine(server: DemoServer, pages: Pages) -> None:
    cid = ApiVisitor(server).open_conversation(unique("Who can help me?"))
    agent = console(pages, server)
    item = agent.locator(f'.conv-item[data-id="{cid}"]')
    agent.click('[data-assignee="me"]')
    expect(agent.locator('[data-assignee="me"]')).to_have_class("active")
    expect(item).to_have_count(0)
    agent.click('[data-assignee="unassigned"]')
    item.click()
    agent.click(".view-header .assign-me")
    expect(agent.locator(".messages .activity")).to_have_text(
        ["Demo Agent self-assigned this conversation"]
    )
    expect(item).to_have_count(0)  # no longer unassigned
    agent.click('[data-assignee="me"]')
    expect(item).to_be_visible()
    expect(agent.locator(".view-header .assign-select")).to_have_value(
        str(agent.evaluate("() => window.agentConsole.profile.id"))
    )
    # Unassigned again from the menu.
    agent.select_option(".view-header .assign-select", "")
    expect(item).to_have_count(0)
    agent.click('[data-assignee="all"]')
    expect(item).to_be_visible()
    conv = agent_call(server, "GET", f"/conversations/{cid}")
    assert conv["meta"]["assignee"] is None


def test_search_finds_a_conversation_by_message_text(server: DemoServer, pages: Pages) -> None:
    word = uuid.uuid4().hex[:10]
    visitor = ApiVisitor(server)
    cid = visitor.open_conversation(f"My order {word} never arrived")
    ApiVisitor(server).open_conversation("something else entirely")
    agent = console(pages, server)
    expect(agent.locator(".conv-item").first).to_be_visible()
    agent.fill(".search-input", word.upper())
    expect(agent.locator(".conv-item")).to_have_count(1)
    expect(agent.locator(".conv-item")).to_have_attribute("data-id", str(cid))
    agent.locator(".conv-item").click()
    expect(agent.locator(".message.from-visitor .text")).to_have_text(
        [f"My order {word} never arrived"]
    )
    agent.fill(".search-input", "zz" + uuid.uuid4().hex)
    expect(agent.locator(".conv-none")).to_have_text("Nothing found")
    agent.press(".search-input", "Escape")
    expect(agent.locator(f'.conv-item[data-id="{cid}"]')).to_be_visible()
    assert agent.locator(".conv-item").count() > 1


def test_the_list_loads_page_two_on_scroll(server: DemoServer, pages: Pages) -> None:
    # 27 conversations, 9 per visitor (within conversations_per_contact).
    ids: list[int] = []
    for _ in range(3):
        visitor = ApiVisitor(server)
        ids += [visitor.open_conversation(unique("seed")) for _ in range(9)]
    oldest = ids[0]
    agent = console(pages, server)
    items = agent.locator(".conv-item")
    expect(items).to_have_count(25)
    expect(agent.locator(f'.conv-item[data-id="{oldest}"]')).to_have_count(0)
    agent.locator(".conv-list").evaluate("box => box.scrollTo(0, box.scrollHeight)")
    expect(agent.locator(f'.conv-item[data-id="{oldest}"]')).to_be_visible()
    assert items.count() > 25


def test_resolve_and_reopen_write_activity_lines(server: DemoServer, pages: Pages) -> None:
    cid = ApiVisitor(server).open_conversation(unique("Please close this"))
    agent = console(pages, server)
    agent.click(f'.conv-item[data-id="{cid}"]')
    agent.click(".view-header .resolve")
    lines = agent.locator(".messages .activity")
    expect(lines).to_have_text(["Conversation was marked resolved by Demo Agent"])
    agent.click(".view-header .reopen")
    expect(lines).to_have_text(
        [
            "Conversation was marked resolved by Demo Agent",
            "Conversation was reopened by Demo Agent",
        ]
    )
    # A fresh load lists them too (they were written, not only pushed).
    agent.reload()
    agent.wait_for_selector(".connection[data-state=connected]")
    agent.click(f'.conv-item[data-id="{cid}"]')
    expect(lines).to_have_count(2)


def test_on_a_phone_the_contact_opens_over_the_conversation(
    server: DemoServer, pages: Pages
) -> None:
    """At 390 px there is no room beside the conversation: the panel is hidden until the
    header's "Contact" button opens it over the whole screen; its toggle closes it. On a
    desktop that button is not shown (the panel sits beside the conversation)."""
    visitor = ApiVisitor(server)
    name = unique("Lin")
    visitor.patch_contact(name=name)
    cid = visitor.open_conversation("from my phone")
    phone = open_console(pages.new(390, 844), server)
    phone.click(f'.conv-item[data-id="{cid}"]')
    panel = phone.locator(".contact-panel")
    show = phone.locator(".view-header .contact-show")
    expect(show).to_be_visible()
    expect(show).to_have_attribute("aria-expanded", "false")
    expect(panel).to_be_hidden()
    expect(phone.locator(".conv-view")).to_be_visible()

    show.click()
    expect(panel.locator(".contact-name dd")).to_have_text(name)
    found = panel.bounding_box()
    assert found is not None and found["width"] == 390
    expect(show).to_have_attribute("aria-expanded", "true")
    panel.locator(".contact-toggle").click()
    expect(panel).to_be_hidden()
    expect(phone.locator(".composer .reply-input")).to_be_visible()

    desktop = console(pages, server)
    desktop.click(f'.conv-item[data-id="{cid}"]')
    expect(desktop.locator(".view-header .contact-show")).to_be_hidden()
    expect(desktop.locator(".contact-panel .contact-name dd")).to_have_text(name)
    # A contact with no custom attributes: the panel leaves the section out (it once wrote
    # "null" in its place).
    expect(desktop.locator(".contact-panel")).not_to_contain_text("null")
