"""Interactive messages, the CSAT survey and labels in our own pages, in headless Chromium
against a real `python -m server` (issue 17 item 8): the demo widget answers a form and the
survey with PATCH /api/v1/widget/messages/:id, the console shows the answers live, and the
console labels a conversation (and sees the widget's $chatwoot.setLabel live)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import (
    DemoServer,
    Pages,
    agent_call,
    open_console,
    widget_auth_token,
    widget_conversation_id,
)

ROOT = Path(__file__).resolve().parents[2]
X = "\u00d7"  # the label chip's remove button


def start_chat(page: Any, server: DemoServer, website_token: str | None = None) -> int:
    """The demo page (for `website_token`'s inbox), the visitor's first message; the
    conversation's display id."""
    query = f"/?website_token={website_token}" if website_token else "/"
    page.goto(server.url + query)
    page.wait_for_selector(".cw-root[data-connection=connected]")
    page.click(".cw-launcher")  # the widget starts closed
    page.fill(".cw-input", f"Hello [{uuid.uuid4().hex[:6]}]")
    page.keyboard.press("Enter")
    return widget_conversation_id(page)


def admin(server: DemoServer, *args: str) -> dict[str, Any]:
    """`python -m server admin ...` against the server's own database."""
    env = {**os.environ, **server.process.env, "SEED_DEMO": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "server", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_visitor_fills_a_form_and_the_agent_sees_the_answer(
    demo_server: DemoServer, pages: Pages
) -> None:
    visitor = pages.new()
    cid = start_chat(visitor, demo_server)
    form = {
        "content": "A few details, please",
        "content_type": "form",
        "content_attributes": {
            "items": [
                {"name": "email", "label": "Email", "type": "email", "required": True},
                {
                    "name": "size",
                    "label": "Team size",
                    "type": "select",
                    "options": [
                        {"label": "1-10", "value": "small"},
                        {"label": "11+", "value": "big"},
                    ],
                },
                {"name": "note", "label": "Note", "type": "text_area"},
            ]
        },
    }
    sent = agent_call(demo_server, "POST", f"/conversations/{cid}/messages", form)
    agent = open_console(pages.new(1100, 720), demo_server)
    agent.locator(f'.conv-item[data-id="{cid}"]').click()
    message = agent.locator(f'.message[data-id="{sent["id"]}"]')
    expect(message.locator(".interactive .offered")).to_have_text("Form: Email · Team size · Note")
    expect(message.locator(".interactive .answer")).to_have_text("Not answered yet")

    control = visitor.locator(f'.cw-message[data-id="{sent["id"]}"] .cw-form')
    expect(control).to_be_visible()
    control.locator('input[name="email"]').fill("not an email")
    control.locator('select[name="size"]').select_option("big")
    control.locator('textarea[name="note"]').fill("Call after 5")
    control.locator(".cw-answer-send").click()
    # The browser's own check stops a malformed email; the server is never asked.
    expect(visitor.locator(f'.cw-message[data-id="{sent["id"]}"] .cw-answered')).to_have_count(0)
    control.locator('input[name="email"]').fill("ops@example.com")
    control.locator(".cw-answer-send").click()
    answered = visitor.locator(f'.cw-message[data-id="{sent["id"]}"] .cw-answered')
    expect(answered).to_contain_text("ops@example.com")
    expect(message.locator(".interactive .answer")).to_have_text(
        "Answer: Email: ops@example.com · Team size: big · Note: Call after 5"
    )
    # Stored: a reload shows it answered.
    visitor.reload()
    expect(answered).to_contain_text("Team size: big")


def test_the_visitor_answers_the_csat_survey(demo_server: DemoServer, pages: Pages) -> None:
    inbox = admin(
        demo_server,
        "create-inbox",
        "--account",
        str(demo_server.account_id),
        "--name",
        f"CSAT {uuid.uuid4().hex[:4]}",
        "--csat-survey",
    )
    visitor = pages.new()
    cid = start_chat(visitor, demo_server, inbox["website_token"])
    agent = open_console(pages.new(1100, 720), demo_server)
    agent.locator(f'.conv-item[data-id="{cid}"]').click()
    agent.locator(".view-header .resolve").click()

    survey = visitor.locator(".cw-message .cw-csat")
    expect(survey).to_be_visible()
    expect(visitor.locator(".cw-ended")).to_be_visible()
    survey.locator('.cw-rating[data-rating="4"]').click()
    survey.locator(".cw-feedback").fill("Quick and friendly")
    survey.locator(".cw-answer-send").click()
    expect(visitor.locator(".cw-message .cw-answered")).to_have_text(
        "✓ Rated 4/5: Quick and friendly"
    )
    expect(agent.locator(".message .interactive .answer")).to_have_text(
        "Answer: Rated 4/5: Quick and friendly"
    )
    listed = agent_call(demo_server, "GET", "/csat_survey_responses")
    mine = [r for r in listed if r["conversation_id"] == cid]
    assert [(r["rating"], r["feedback_message"]) for r in mine] == [(4, "Quick and friendly")]


def test_labels_in_the_console_and_from_the_customers_page(
    demo_server: DemoServer, pages: Pages
) -> None:
    tag = uuid.uuid4().hex[:6]
    for title in (f"vip-{tag}", f"billing-{tag}"):
        agent_call(demo_server, "POST", "/labels", {"title": title})
    visitor = pages.new()
    cid = start_chat(visitor, demo_server)
    agent = open_console(pages.new(1100, 720), demo_server)
    item = agent.locator(f'.conv-item[data-id="{cid}"]')
    item.click()

    agent.locator(".view-header .label-add").select_option(f"vip-{tag}")
    chips = agent.locator(".view-header .label-chip")
    expect(chips).to_have_text([f"vip-{tag}{X}"])
    expect(item.locator(".label-chip")).to_have_text([f"vip-{tag}"])
    assert agent_call(demo_server, "GET", f"/conversations/{cid}/labels") == {
        "payload": [f"vip-{tag}"]
    }

    # The customer's page labels the conversation ($chatwoot.setLabel): the console sees it live.
    token = widget_auth_token(visitor)
    status = visitor.evaluate(
        """async ([websiteToken, token, label]) => {
            const r = await fetch(`/api/v1/widget/labels?website_token=${websiteToken}`, {
              method: "POST",
              headers: {"Content-Type": "application/json", "X-Auth-Token": token},
              body: JSON.stringify({label}),
            });
            return r.status;
        }""",
        [demo_server.website_token, token, f"billing-{tag}"],
    )
    assert status == 204
    expect(chips).to_have_text([f"vip-{tag}{X}", f"billing-{tag}{X}"])

    agent.locator(f'.view-header .label-chip[data-label="vip-{tag}"] .label-remove').click()
    expect(chips).to_have_text([f"billing-{tag}{X}"])
    assert agent_call(demo_server, "GET", f"/conversations/{cid}/labels") == {
        "payload": [f"billing-{tag}"]
    }


def test_the_agent_offers_options_from_the_console(demo_server: DemoServer, pages: Pages) -> None:
    """The console's "Options": a question with one option per line goes out as
    input_select; the widget shows the options as buttons, the visitor picks one, and the
    console shows the answer. Options on a private note are refused in the console."""
    visitor = pages.new()
    cid = start_chat(visitor, demo_server)
    agent = open_console(pages.new(1280, 800), demo_server)
    agent.locator(f'.conv-item[data-id="{cid}"]').click()
    composer = agent.locator(".composer")
    composer.locator(".options-toggle").click()
    expect(composer.locator(".options-toggle")).to_have_attribute("aria-pressed", "true")
    composer.locator(".options-input").fill("Small\n\n  Large  \nSmall")  # blanks, repeats
    agent.locator(".private-toggle").check()
    agent.fill(".composer .reply-input", "Which size?")
    composer.locator(".send").click()
    expect(agent.locator(".toast")).to_contain_text("untick Private note")
    agent.locator(".private-toggle").uncheck()
    composer.locator(".send").click()

    message = agent.locator(".message", has_text="Which size?")
    expect(message.locator(".interactive .offered")).to_have_text("Options: Small · Large")
    expect(message.locator(".interactive .answer")).to_have_text("Not answered yet")
    expect(composer.locator(".options-panel")).to_be_hidden()  # reset for the next reply

    options = visitor.locator(".cw-message", has_text="Which size?").locator(".cw-option")
    expect(options).to_have_text(["Small", "Large"])
    options.nth(1).click()
    expect(message.locator(".interactive .answer")).to_have_text("Answer: Large")
