"""The transcript mail: plain-text and HTML parts listing every message the visitor sees, in
order, with its sender and time (UTC).

Everything that comes from visitors or agents is data, never markup or headers: the HTML
part escapes it, and header values are stripped of control characters (Python's email
package also refuses a CR or LF in a header), and the recipient must be a plain address."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from server.events import INCOMING
from server.store.transcripts import Transcript

# A plain ASCII address: no spaces, quotes, brackets, commas or control characters, one @.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# Characters of message text in one mail, at most: older messages beyond it are left out.
MAX_TEXT = 512 * 1024


class Undeliverable(ValueError):
    """The recipient is not an address we can put in a header safely."""


def plain_address(raw: str) -> str:
    if not _ADDRESS.fullmatch(raw) or ".." in raw or raw.endswith("."):
        raise Undeliverable("not a plain ASCII email address")
    return raw


def header_text(raw: str, max_len: int = 200) -> str:
    """One line of text for a header or a name: control characters become spaces."""
    return _CONTROL.sub(" ", raw).strip()[:max_len]


def _sender_name(msg: dict, sender: dict | None) -> str:
    if sender is not None and sender.get("name"):
        return header_text(str(sender["name"]), 100)
    return "You" if msg["message_type"] == INCOMING else "Bot"


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _lines(t: Transcript) -> tuple[list[tuple[str, str, str]], bool]:
    """(sender, time, text) per message, oldest first, within MAX_TEXT characters (the
    newest kept); and whether older ones were left out."""
    out: list[tuple[str, str, str]] = []
    budget = MAX_TEXT
    omitted = t.omitted
    for msg, sender in reversed(t.messages):
        text = msg["content"] or "(no text)"
        if len(text) > budget:
            omitted = True
            break
        budget -= len(text)
        out.append((_sender_name(msg, sender), _time(msg["created_at"]), text))
    out.reverse()
    return out, omitted


def build(t: Transcript, *, to: str, mail_from: str) -> EmailMessage:
    """The mail for `to` (raises Undeliverable for an address unsafe to send to)."""
    recipient = plain_address(to)
    inbox = header_text(t.inbox_name, 100) or "Chat"
    display_id = t.conversation["display_id"]
    lines, omitted = _lines(t)
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = f"[#{display_id}] Conversation transcript from {inbox}"
    msg["From"] = Address(display_name=inbox, addr_spec=mail_from)
    msg["To"] = recipient
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=mail_from.rsplit("@", 1)[1])
    msg["Auto-Submitted"] = "auto-generated"
    intro = f"Your conversation with {inbox} (#{display_id})."
    note = "Earlier messages are not included." if omitted else ""
    text = [intro, note, ""] if note else [intro, ""]
    for who, when, body in lines:
        text += [f"{who} ({when}):", body, ""]
    msg.set_content("\n".join(text))
    parts = [f"<p>{html.escape(intro)}</p>"]
    if note:
        parts.append(f"<p><em>{html.escape(note)}</em></p>")
    for who, when, body in lines:
        parts.append(
            f'<div style="margin:0 0 12px"><strong>{html.escape(who)}</strong> '
            f'<span style="color:#6b7280">{html.escape(when)}</span><br>'
            + html.escape(body).replace("\n", "<br>\n")
            + "</div>"
        )
    msg.add_alternative(
        '<!doctype html><html><body style="font-family:sans-serif">'
        + "\n".join(parts)
        + "</body></html>",
        subtype="html",
    )
    return msg
