"""Layout at phone, tablet and desktop sizes, in headless Chromium against a real server.

The demo widget starts closed (the launcher only), and open it fills a phone's screen but
floats in the corner on a desktop. The console shows one pane at a time on a phone (the
list, or the conversation with a back button) and both from tablet width (768 px)."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import (
    DemoServer,
    Pages,
    open_console,
    open_widget,
    widget_conversation_id,
)

PHONE, TABLET, DESKTOP = (390, 844), (768, 1024), (1280, 800)


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not on screen"
    return found


def no_sideways_scroll(page: Any) -> None:
    width = page.viewport_size["width"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


def start_chat(server: DemoServer, pages: Pages) -> int:
    visitor = open_widget(pages.new(), server)
    visitor.fill(".cw-input", f"Hello from a phone [{uuid.uuid4().hex[:6]}]")
    visitor.keyboard.press("Enter")
    return widget_conversation_id(visitor)


def test_widget_starts_closed_and_fills_a_phone(demo_server: DemoServer, pages: Pages) -> None:
    page = open_widget(pages.new(*PHONE), demo_server, open_panel=False)
    expect(page.locator(".cw-panel")).to_be_hidden()
    launcher = box(page, ".cw-launcher")
    assert launcher["x"] + launcher["width"] <= PHONE[0]
    assert launcher["y"] + launcher["height"] <= PHONE[1]
    no_sideways_scroll(page)

    page.click(".cw-launcher")
    expect(page.locator(".cw-panel")).to_be_visible()
    panel = box(page, ".cw-panel")
    assert (panel["x"], panel["y"], panel["width"], panel["height"]) == (0, 0, *PHONE)
    expect(page.locator(".cw-launcher")).to_be_hidden()  # the header's close button stays
    composer = box(page, ".cw-composer")
    assert composer["y"] + composer["height"] <= PHONE[1]
    no_sideways_scroll(page)

    page.click(".cw-close")
    expect(page.locator(".cw-panel")).to_be_hidden()
    expect(page.locator(".cw-launcher")).to_be_visible()
    # Closed stays closed on the next page of the site; opened stays open.
    page.reload()
    page.wait_for_selector(".cw-root[data-connection=connected]")
    expect(page.locator(".cw-panel")).to_be_hidden()
    page.click(".cw-launcher")
    page.reload()
    page.wait_for_selector(".cw-root[data-connection=connected]")
    expect(page.locator(".cw-panel")).to_be_visible()


def test_widget_floats_on_a_desktop(demo_server: DemoServer, pages: Pages) -> None:
    page = open_widget(pages.new(*DESKTOP), demo_server, open_panel=False)
    expect(page.locator(".cw-panel")).to_be_hidden()
    page.click(".cw-launcher")
    panel = box(page, ".cw-panel")
    assert panel["width"] == 360
    assert panel["x"] > DESKTOP[0] / 2  # in the bottom right corner
    expect(page.locator(".cw-launcher")).to_be_visible()
    # The iframe page (/widget) is the widget alone, always open, at any size.
    for size in (PHONE, DESKTOP):
        frame = pages.new(*size)
        frame.goto(f"{demo_server.url}/widget?website_token={demo_server.website_token}")
        frame.wait_for_selector(".cw-root.cw-embedded[data-connection=connected]")
        assert box(frame, ".cw-panel")["width"] == size[0]
        expect(frame.locator(".cw-launcher")).to_have_count(0)


def test_console_one_pane_at_a_time_on_a_phone(demo_server: DemoServer, pages: Pages) -> None:
    cid = start_chat(demo_server, pages)
    console = open_console(pages.new(*PHONE), demo_server)
    expect(console.locator(".conv-view")).to_be_hidden()
    sidebar = box(console, ".sidebar")
    assert sidebar["width"] == PHONE[0]
    no_sideways_scroll(console)

    console.locator(f'.conv-item[data-id="{cid}"] .conv-open').click()
    expect(console.locator(".sidebar")).to_be_hidden()
    view = box(console, ".conv-view")
    assert view["width"] == PHONE[0]
    expect(console.locator(".message.from-visitor")).to_have_count(1)
    bubble = box(console, ".message.from-visitor .bubble")
    assert bubble["width"] > PHONE[0] / 3  # not squeezed into a sliver
    # The conversation's actions are in its own header, and the header fits.
    expect(console.locator(".view-header .view-actions .resolve")).to_be_visible()
    resolve = box(console, ".view-header .resolve")
    assert resolve["x"] + resolve["width"] <= PHONE[0]
    no_sideways_scroll(console)

    back = console.get_by_role("button", name="Back to conversations")
    expect(back).to_be_visible()
    back.click()
    expect(console.locator(".conv-view")).to_be_hidden()
    expect(console.locator(".sidebar")).to_be_visible()
    expect(console.locator(f'.conv-item[data-id="{cid}"] .conv-open')).to_be_focused()
    assert "conversation=" not in console.url

    # A link to a conversation opens it; the browser's back button returns to the list.
    console.goto(f"{demo_server.url}/console#conversation={cid}")
    expect(console.locator(".message.from-visitor")).to_have_count(1)
    expect(console.locator(".sidebar")).to_be_hidden()
    console.go_back()
    expect(console.locator(".sidebar")).to_be_visible()
    expect(console.locator(".conv-view")).to_be_hidden()


def test_console_two_panes_from_tablet_width(demo_server: DemoServer, pages: Pages) -> None:
    cid = start_chat(demo_server, pages)
    for size in (TABLET, DESKTOP):
        console = open_console(pages.new(*size), demo_server)
        console.locator(f'.conv-item[data-id="{cid}"] .conv-open').click()
        expect(console.locator(".message.from-visitor")).to_have_count(1)
        sidebar, view = box(console, ".sidebar"), box(console, ".conv-view")
        assert sidebar["x"] + sidebar["width"] <= view["x"]  # side by side
        assert view["width"] >= size[0] / 2
        expect(console.locator(".back")).to_be_hidden()
        # The filters are the list's, the actions the conversation's: apart on screen.
        filters = box(console, ".sidebar .filters:not(.assignee-filters)")
        actions = box(console, ".view-actions")
        assert filters["x"] + filters["width"] < actions["x"]
        no_sideways_scroll(console)
