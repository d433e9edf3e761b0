"""What a running web process holds: settings, database, bus, hub. Handlers reach it
through `services(request)`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from server.bus import Bus
from server.ratelimit import Limiter, MemoryEngine, RateLimits
from server.settings import Settings
from server.store import accounts as accounts_store
from server.store.db import Database
from server.store.writes import Store

if TYPE_CHECKING:
    from server.connections import AddressCounts, ConnectionGuard
    from server.hub.hub import Hub
    from server.hub.sessions import Sessions
    from server.mail.mailer import Mailer


class InboxCache:
    """website_token -> inbox row, for a few seconds: every widget request needs it and it
    almost never changes. Entries are short-lived so admin changes show up quickly."""

    def __init__(self, db: Database, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.db = db
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def get(self, token: str) -> dict[str, Any] | None:
        now = time.monotonic()
        hit = self._entries.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        inbox = await self.db.read(accounts_store.inbox_by_website_token, token)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[token] = (now + self.ttl, inbox)
        return inbox


@dataclass
class Services:
    settings: Settings
    db: Database
    bus: Bus
    inboxes: InboxCache
    store: Store  # the one call per kind of write (server/store/writes.py)
    presence: Any = None
    limiter: Limiter = field(default_factory=lambda: Limiter(RateLimits(), MemoryEngine()))
    hub: Hub | None = None
    # Extended-protocol sessions (server/hub/sessions.py); None: SESSION_TTL=0.
    sessions: Sessions | None = None
    background: list[Any] = field(default_factory=list)
    # Open connections per client address (server/connections.py); the guard that counts
    # them at accept is installed by serve.py (None under aiohttp's TestServer).
    connections: AddressCounts | None = None
    guard: ConnectionGuard | None = None
    health: Any = None  # server.health.Health: /livez, /readyz, draining
    attachments: Any = None  # server.uploads.Attachments: storage, thumbnails, limits
    # Transcript mails (server/mail/mailer.py); None: SMTP_URL is not set.
    mailer: Mailer | None = None
    voice: Any = None  # server.voice.calls.VoiceCalls: reconciliation, call counters


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
