"""POST /api/v1/widget/conversations/transcript over real HTTP on both databases, mailed
through a real SMTP server the test starts (tests/smtp_server.py) and read back from it."""

from __future__ import annotations

import asyncio
import logging
import time
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.ratelimit import Rate, RateLimits
from server.services import SERVICES
from server.settings import SettingsError
from server.store import accounts as accounts_store
from tests.conftest import Visitor, World, build_world, make_settings
from tests.smtp_server import Mailbox

# The local server takes a login without TLS: it listens on loopback only.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

API = "/api/v1"
FROM = "chat@example.com"
LOGIN = ("bot@example.com", "p@ss:word")
SMTP_URL = "smtp://bot%40example.com:p%40ss%3Aword@127.0.0.1:{port}"


async def mail_client(
    db_url: str, tmp_path: Any, aiohttp_client: Any, port: int, **overrides: Any
) -> TestClient:
    env = {"smtp_url": SMTP_URL.format(port=port), "mail_from": FROM, **overrides}
    return await aiohttp_client(create_app(make_settings(db_url, tmp_path, **env)))


@pytest.fixture
async def mailbox() -> Any:
    box = await Mailbox(login=LOGIN).start()
    yield box
    await box.close()


async def agent_reply(client: TestClient, world: World, display_id: int, body: dict) -> None:
    url = f"{API}/accounts/{world.account['id']}/conversations/{display_id}/messages"
    headers = {"api_access_token": world.agent["access_token"]}
    resp = await client.post(url, json=body, headers=headers)
    assert resp.status == 200, await resp.text()


def parts(mail: EmailMessage) -> tuple[str, str]:
    text = mail.get_body(preferencelist=("plain",))
    page = mail.get_body(preferencelist=("html",))
    assert text is not None and page is not None
    # Lines end in CRLF on the wire.
    return tuple(p.get_content().replace("\r\n", "\n") for p in (text, page))  # type: ignore[return-value]


async def counters(client: TestClient) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    out = {}
    for result in ("sent", "failed", "dropped", "retried"):
        line = f'chat_transcript_mails_total{{result="{result}"}}'
        out[result] = next(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))
    return out


async def settled(client: TestClient, **expected: float) -> dict[str, float]:
    """The counters once they read `expected` (a mail arrives before its sender counts it)."""
    deadline = time.monotonic() + 10
    while True:
        got = await counters(client)
        if all(got[k] == v for k, v in expected.items()):
            return got
        assert time.monotonic() < deadline, f"counters {got}, expected {expected}"
        await asyncio.sleep(0.05)


async def test_the_conversation_is_mailed_to_the_contact(
    db_url: str, tmp_path: Any, aiohttp_client: Any, mailbox: Mailbox
) -> None:
    client = await mail_client(db_url, tmp_path, aiohttp_client, mailbox.port)
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    assert (await visitor.patch("contact", {"email": "Jo@Example.org", "name": "Jo"})).status == 200
    first = await visitor.send("Hello, is my order <b>shipped</b>? <script>alert(1)</script>")
    display_id = first["conversation_id"]
    await agent_reply(client, world, display_id, {"content": "Yes & it arrives Friday.\nBye"})
    await agent_reply(client, world, display_id, {"content": "internal: VIP", "private": True})
    await visitor.send("Thanks! Grüße ☕")
    other = await Visitor(client, world.inbox["website_token"]).start()
    await other.patch("contact", {"email": "other@example.org"})
    await other.send("someone else's words")

    resp = await visitor.post("conversations/transcript", {"email": "ignored@evil.example"})
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b""
    [mail] = await mailbox.wait_for(1)

    envelope = mailbox.envelopes[0]
    assert envelope.rcpt_tos == ["jo@example.org"]
    assert envelope.mail_from == FROM
    assert mailbox.logins == [LOGIN]
    assert mail["To"] == "jo@example.org"
    assert FROM in mail["From"] and "Acme site" in mail["From"]
    assert f"#{display_id}" in mail["Subject"]
    assert mail["Message-ID"] and mail["Date"]
    text, page = parts(mail)
    said = [
        "Hello, is my order <b>shipped</b>? <script>alert(1)</script>",
        "Yes & it arrives Friday.\nBye",
        "Thanks! Grüße ☕",
    ]
    positions = [text.index(s) for s in said]
    assert positions == sorted(positions)
    assert "Jo (" in text and "Agent A (" in text and " UTC" in text
    assert "internal: VIP" not in text and "internal: VIP" not in page
    assert "someone else" not in text and "someone else" not in page
    assert "ignored@evil" not in mailbox.envelopes[0].content.decode()  # type: ignore[union-attr]
    # The HTML part shows the text, never runs it.
    assert "<script>" not in page and "<b>shipped" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Yes &amp; it arrives Friday.<br>" in page
    assert "<strong>Agent A</strong>" in page
    await settled(client, sent=1, failed=0)
    assert (await client.get("/readyz")).status == 200


async def test_nothing_is_sent_without_an_email_or_a_conversation(
    db_url: str, tmp_path: Any, aiohttp_client: Any, mailbox: Mailbox
) -> None:
    client = await mail_client(db_url, tmp_path, aiohttp_client, mailbox.port)
    world = await build_world(client.app[SERVICES].db)
    no_email = await Visitor(client, world.inbox["website_token"]).start()
    await no_email.send("hi")
    assert (await no_email.post("conversations/transcript")).status == 200
    no_conversation = await Visitor(client, world.inbox["website_token"]).start()
    await no_conversation.patch("contact", {"email": "nc@example.org"})
    assert (await no_conversation.post("conversations/transcript")).status == 200
    # One worker sends in order: when a later request's mail arrives, the earlier ones would
    # have been sent before it.
    marker = await Visitor(client, world.inbox["website_token"]).start()
    await marker.patch("contact", {"email": "marker@example.org"})
    await marker.send("marker")
    assert (await marker.post("conversations/transcript")).status == 200
    await mailbox.wait_for(1)
    assert [e.rcpt_tos for e in mailbox.envelopes] == [["marker@example.org"]]


async def test_without_smtp_the_request_is_answered_and_nothing_queued(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    await visitor.patch("contact", {"email": "jo@example.org"})
    await visitor.send("hi")
    resp = await visitor.post("conversations/transcript")
    assert resp.status == 200
    assert client.app[SERVICES].mailer is None
    assert "chat_transcript_mails" not in await (await client.get("/metrics")).text()
    assert (await client.get("/readyz")).status == 200


async def test_transcripts_are_rate_limited_per_conversation(
    db_url: str, tmp_path: Any, aiohttp_client: Any, mailbox: Mailbox
) -> None:
    limits = RateLimits(transcripts_per_conversation=Rate(2, 3600))
    client = await mail_client(db_url, tmp_path, aiohttp_client, mailbox.port, rate_limits=limits)
    visitor = await visitor_with_email(client)
    for _ in range(2):
        assert (await visitor.post("conversations/transcript")).status == 200
    resp = await visitor.post("conversations/transcript")
    assert resp.status == 429
    assert (await resp.json())["limit"] == "transcripts_per_conversation"
    assert int(resp.headers["Retry-After"]) >= 1
    other = await Visitor(client, visitor.website_token).start()
    await other.patch("contact", {"email": "other@example.org"})
    await other.send("hi")
    assert (await other.post("conversations/transcript")).status == 200
    await mailbox.wait_for(3)


async def test_headers_cannot_be_injected(
    db_url: str, tmp_path: Any, aiohttp_client: Any, mailbox: Mailbox, caplog: Any
) -> None:
    client = await mail_client(db_url, tmp_path, aiohttp_client, mailbox.port)
    db = client.app[SERVICES].db
    world = await build_world(db)

    async def evil_inbox(conn: Any) -> dict:
        return await accounts_store.create_inbox(
            conn, account_id=world.account["id"], name="Shop\r\nBcc: spy@evil.example"
        )

    inbox = await db.write(evil_inbox)
    # The address itself carries a header: the contact API keeps it, the mailer refuses it.
    evil = await Visitor(client, inbox["website_token"]).start()
    resp = await evil.patch("contact", {"email": "a@example.org\r\nBcc: spy@evil.example"})
    assert resp.status == 200, await resp.text()
    await evil.send("hi")
    with caplog.at_level(logging.WARNING, logger="server.mail.mailer"):
        assert (await evil.post("conversations/transcript")).status == 200
        honest = await Visitor(client, inbox["website_token"]).start()
        await honest.patch("contact", {"email": "b@example.org", "name": "B\r\nBcc: x@y.z"})
        await honest.send("hello")
        assert (await honest.post("conversations/transcript")).status == 200
        [mail] = await mailbox.wait_for(1)
    assert mailbox.envelopes[0].rcpt_tos == ["b@example.org"]
    assert mail["Bcc"] is None
    # The inbox's name stays text on the subject's one line, and in the From display name.
    assert "Shop Bcc: spy@evil.example" in mail["Subject"] and "\n" not in mail["Subject"]
    assert mail["From"].addresses[0].addr_spec == FROM
    raw = mailbox.envelopes[0].content.decode()  # type: ignore[union-attr]
    assert "\nBcc:" not in raw.split("\r\n\r\n", 1)[0].replace("\r\n", "\n")
    failed = [r for r in caplog.records if "not sent" in r.getMessage()]
    assert len(failed) == 1 and "correct the contact's email" in failed[0].getMessage()
    await settled(client, sent=1, failed=1, dropped=0)


async def visitor_with_email(client: TestClient) -> Visitor:
    """A visitor of a new world's inbox with an email on their contact and a conversation:
    one whose transcript can be mailed."""
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    await visitor.patch("contact", {"email": "jo@example.org"})
    await visitor.send("hi")
    return visitor


async def test_an_unreachable_smtp_server_is_counted_and_logged(
    db_url: str, tmp_path: Any, aiohttp_client: Any, caplog: Any
) -> None:
    closed = await Mailbox().start()
    port = closed.port
    await closed.close()  # nothing listens there now
    client = await mail_client(
        db_url, tmp_path, aiohttp_client, port,
        smtp_timeout=2.0, smtp_retry_after=0.05, smtp_attempts=2,
    )  # fmt: skip
    visitor = await visitor_with_email(client)
    with caplog.at_level(logging.WARNING, logger="server.mail.mailer"):
        assert (await visitor.post("conversations/transcript")).status == 200
        # Refused connections may pass: tried again once, then counted as failed.
        await settled(client, failed=1, sent=0, retried=1)
    line = next(r.getMessage() for r in caplog.records if "not sent" in r.getMessage())
    assert "check SMTP_URL" in line and "p@ss" not in line
    assert (await client.get("/readyz")).status == 200  # mail is not what makes us ready


async def test_a_full_queue_answers_503(
    db_url: str, tmp_path: Any, aiohttp_client: Any, mailbox: Mailbox
) -> None:
    limits = RateLimits(transcripts_per_conversation=None)
    client = await mail_client(
        db_url, tmp_path, aiohttp_client, mailbox.port, mail_queue_size=1, rate_limits=limits
    )
    visitor = await visitor_with_email(client)
    mailer = client.app[SERVICES].mailer
    assert mailer is not None
    mailbox.hold = asyncio.Event()
    try:
        assert (await visitor.post("conversations/transcript")).status == 200
        deadline = time.monotonic() + 10
        while mailer.queue.qsize():  # the worker took it and waits on the server
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert (await visitor.post("conversations/transcript")).status == 200  # queued
        resp = await visitor.post("conversations/transcript")
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert "retry" in (await resp.json())["error"]
    finally:
        mailbox.hold.set()
    await mailbox.wait_for(2)
    await settled(client, sent=2, dropped=1)


async def test_widget_transcript_needs_a_visitor(client: TestClient, world: World) -> None:
    token = world.inbox["website_token"]
    resp = await client.post(f"{API}/widget/conversations/transcript?website_token={token}")
    assert resp.status == 404
    resp = await client.post(f"{API}/widget/conversations/transcript?website_token=nope")
    assert resp.status == 404
    visitor = await Visitor(client, token).start()
    resp = await visitor.request("POST", "conversations/transcript", data=b"{nope")
    assert resp.status == 400
    assert "malformed JSON" in (await resp.json())["error"]


def test_mail_settings_are_validated(tmp_path: Any) -> None:
    url = "sqlite:///x.db"
    with pytest.raises(SettingsError) as err:
        make_settings(url, tmp_path, smtp_url="http://u:hunter2@h")
    assert "SMTP_URL must be smtp://" in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(SettingsError) as err:
        make_settings(url, tmp_path, smtp_url="smtp://u:hunter2@h:99999", mail_from=FROM)
    assert "SMTP_URL" in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(SettingsError) as err:
        make_settings(url, tmp_path, smtp_url="smtp://h")
    assert "again: MAIL_FROM must be set" in str(err.value)
    with pytest.raises(SettingsError) as err:
        make_settings(url, tmp_path, mail_from="a@b.c\r\nBcc: x@y.z")
    assert "MAIL_FROM must be a plain email address" in str(err.value)
    with pytest.raises(SettingsError) as err:
        make_settings(url, tmp_path, smtp_starttls="maybe")
    assert "SMTP_STARTTLS" in str(err.value)
    ok = make_settings(url, tmp_path, smtp_url="smtps://h", mail_from=FROM, smtp_starttls="ON")
    assert ok.smtp_starttls == "on"


async def test_starttls_on_refuses_a_server_without_it(
    db_url: str, tmp_path: Any, aiohttp_client: Any, mailbox: Mailbox, caplog: Any
) -> None:
    """SMTP_STARTTLS=on: a server that offers no STARTTLS gets no mail (and no password)."""
    client = await mail_client(db_url, tmp_path, aiohttp_client, mailbox.port, smtp_starttls="on")
    visitor = await visitor_with_email(client)
    with caplog.at_level(logging.WARNING, logger="server.mail.mailer"):
        assert (await visitor.post("conversations/transcript")).status == 200
        await settled(client, failed=1, sent=0)
    assert mailbox.envelopes == [] and mailbox.logins == []
    assert any("STARTTLS" in r.getMessage() for r in caplog.records)


async def test_a_busy_smtp_server_gets_the_mail_on_a_later_try(
    db_url: str, tmp_path: Any, aiohttp_client: Any, mailbox: Mailbox, caplog: Any
) -> None:
    """451 (busy, greylisting) twice: the mail is tried again, later each time, and
    arrives; the log says when the next try is."""
    mailbox.refusals = ["451 4.3.0 Try again later", "451 4.7.1 Greylisted"]
    client = await mail_client(
        db_url, tmp_path, aiohttp_client, mailbox.port, smtp_retry_after=0.05, smtp_attempts=4
    )
    visitor = await visitor_with_email(client)
    with caplog.at_level(logging.WARNING, logger="server.mail.mailer"):
        assert (await visitor.post("conversations/transcript")).status == 200
        [mail] = await mailbox.wait_for(1)
        await settled(client, sent=1, failed=0, retried=2)
    assert mail["To"] == "jo@example.org"
    tries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(tries) == 2 and "attempt 2 of 4" in tries[0] and "attempt 3 of 4" in tries[1]


async def test_a_permanent_refusal_is_not_tried_again(
    db_url: str, tmp_path: Any, aiohttp_client: Any, mailbox: Mailbox
) -> None:
    mailbox.refusals = ["550 5.7.1 Message rejected"]
    client = await mail_client(
        db_url, tmp_path, aiohttp_client, mailbox.port, smtp_retry_after=0.05, smtp_attempts=4
    )
    visitor = await visitor_with_email(client)
    assert (await visitor.post("conversations/transcript")).status == 200
    await settled(client, failed=1, retried=0, sent=0)
    assert mailbox.envelopes == [] and mailbox.refusals == []
