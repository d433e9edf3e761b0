"""Files in our own pages, in headless Chromium against a real `python -m server` (issue 17
item 8): the visitor sends an image from the demo widget's file button, sees it inline, the
agent sees it inline in the console; the agent sends a PDF back, which the visitor gets live
as a link to the file, served with its type."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import DemoServer, Pages, open_widget, widget_conversation_id

LOADED = """(selector) => {
  const img = document.querySelector(selector);
  return Boolean(img && img.complete && img.naturalWidth > 0);
}"""


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 200), (30, 140, 90)).save(out, "PNG")
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_files_go_both_ways_and_show_inline(
    demo_server: DemoServer, pages: Pages, agent: Any
) -> None:
    visitor = open_widget(pages.new(), demo_server)
    expect(visitor.locator(".cw-attach")).to_be_visible()  # the inbox offers attachments

    # The visitor sends a screenshot: it shows inline in the widget, from the server.
    visitor.set_input_files(
        ".cw-file-input",
        files=[{"name": "screenshot.png", "mimeType": "image/png", "buffer": _png()}],
    )
    mine = ".cw-mine .attachment-image img"
    visitor.wait_for_selector(mine)
    visitor.wait_for_function(LOADED, arg=mine)
    cid = widget_conversation_id(visitor)

    # The agent sees it inline too.
    item = agent.locator(f'.conv-item[data-id="{cid}"]')
    item.click()
    theirs = ".message.from-visitor .attachment-image img"
    agent.wait_for_selector(theirs)
    agent.wait_for_function(LOADED, arg=theirs)

    # The agent sends a PDF back: the visitor gets a link to it, live.
    agent.set_input_files(
        ".file-input",
        files=[{"name": "price-list.pdf", "mimeType": "application/pdf", "buffer": PDF}],
    )
    link = visitor.locator(".cw-theirs .attachment-file")
    expect(link).to_have_text("price-list.pdf")
    href = link.get_attribute("href")
    assert href
    got = visitor.request.get(href)
    assert got.status == 200 and got.body() == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"].startswith("attachment;")

    # After a reload the widget lists both, from its history.
    visitor.reload()
    visitor.wait_for_selector(".cw-root[data-connection=connected]")
    visitor.wait_for_function(LOADED, arg=mine)
    expect(visitor.locator(".cw-theirs .attachment-file")).to_have_text("price-list.pdf")
