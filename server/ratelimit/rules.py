"""The rate limits: what each one counts, its default, and the variable that changes it.

Every limit is `COUNT/PERIOD`: COUNT at once, then one more every PERIOD/COUNT seconds (a
GCRA budget, see server/ratelimit/engines.py). The defaults let a visitor using the widget
normally never meet one (a reload loop of a few a minute, typing on every keystroke,
presence every 20 s) and stop the floods of issue 13. `off` disables a limit."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    count: int
    period: float  # seconds

    @property
    def interval(self) -> float:
        """Seconds between two requests at the sustained rate."""
        return self.period / self.count

    def __str__(self) -> str:
        return f"{self.count} per {self.period:g} s"


@dataclass(frozen=True)
class RateLimits:
    """One field per limit; `LIMIT_<FIELD>` sets it (e.g. LIMIT_CONTACTS_PER_ADDRESS=30/1m)."""

    # New contacts (POST /widget/config, GET /widget without a valid token) per client address.
    # Reusing a valid token is not counted. Visitors behind one NAT share this budget.
    contacts_per_address: Rate | None = Rate(30, 60)
    # New conversations per contact (POST /widget/conversations, voice_transcript after the
    # latest conversation was resolved).
    conversations_per_contact: Rate | None = Rate(10, 600)
    # voice_signed_url calls (each costs an ElevenLabs request) per visitor (the contact of a
    # valid token, else the client address) and per inbox (all visitors together).
    voice_urls_per_visitor: Rate | None = Rate(10, 600)
    voice_urls_per_inbox: Rate | None = Rate(60, 60)
    # toggle_typing (widget, per contact) and toggle_typing_status (agent, per user). Room
    # for a client that toggles on and off at every keystroke of a long message.
    typing_per_sender: Rate | None = Rate(300, 60)
    # On /cable, per socket: update_presence frames and subscribes (each refreshes presence
    # and reads the account's users), and subscribes refused for an unknown token.
    presence_per_socket: Rate | None = Rate(20, 60)
    failed_subscribes_per_socket: Rate | None = Rate(10, 60)
    # Extended protocol: history reads (a `history` command, a subscribe or restore that asks
    # for history) per socket; each reads the streams' history from the bus. A reconnect
    # spends one per subscription.
    history_per_socket: Rate | None = Rate(30, 60)
    # A visitor's answers to interactive messages (PATCH /widget/messages/:id) and label
    # changes (POST/DELETE /widget/labels), per contact: each writes and emits an event.
    widget_updates_per_contact: Rate | None = Rate(60, 60)
    # Transcript emails (POST /widget/conversations/transcript) per conversation: each one
    # is a mail to the contact's address, so a script cannot turn us into a mail cannon.
    transcripts_per_conversation: Rate | None = Rate(3, 3600)
    # Widget events recorded (POST /widget/events) per contact: the widget sends one when
    # it opens; a loop past this is refused instead of written.
    widget_events_per_contact: Rate | None = Rate(60, 60)
    # voice_transcript_poll calls (each costs an ElevenLabs request) per visitor; the fork's
    # widget polls every 3 s while a call lasts.
    voice_polls_per_visitor: Rate | None = Rate(30, 60)
    # voice_heartbeat, voice_link_elevenlabs and voice_call_ended per visitor (the contact
    # of a valid token): each is a write. The fork's widget sends a heartbeat every 3 s.
    voice_calls_per_visitor: Rate | None = Rate(90, 60)
    # Conversation searches (GET conversations/search) per agent: each scans the messages
    # of the agent's inboxes. The console searches once typing pauses, and on scroll.
    searches_per_agent: Rate | None = Rate(60, 60)


def env_name(field_name: str) -> str:
    return "LIMIT_" + field_name.upper()


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([smh]?)\s*$")


def parse_rate(raw: str) -> Rate | None:
    """`30/60` (30 per 60 s), `30/1m`, `10/h`, or `off`. Anything else is a ValueError
    (server/settings.py names the variable and stops the process): a typo must not silently
    remove a limit."""
    if raw.strip().lower() == "off":
        return None
    match = _RATE.match(raw)
    if match is None or (match.group(2) is None and not match.group(3)):
        raise ValueError(f"must be COUNT/SECONDS (e.g. 30/60, 30/1m, 10/h) or off, got {raw!r}")
    count = int(match.group(1))
    period = float(match.group(2) or 1) * _UNITS[match.group(3)]
    if count < 1 or period <= 0:
        raise ValueError(f"needs a count of at least 1 and a period above 0, got {raw!r}")
    return Rate(count, period)
