"""LISTEN for outbox notifications on PostgreSQL.

Every outbox insert NOTIFYs (see `server.store.outbox`); PostgreSQL delivers the
notifications of a transaction when it commits, in commit order, and only to connections
listening at that moment. So a relay that listens publishes each event as it commits, without
reading the table; what it must still read is what committed while it was not listening
(before it connected, or while the connection was down): `lost` says when that is the case.

The connection is asyncpg's own, not the pool's: it stays open and idle, listening."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from server.bus.health import enable_keepalive
from server.store.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
# Seconds of silence before TCP keepalive probes the listening connection.
KEEPALIVE_IDLE = 10.0
# The listening connection's name in pg_stat_activity.
APPLICATION_NAME = "chat-outbox-listener"


def asyncpg_dsn(url: str) -> str:
    """A libpq-style DSN for asyncpg from the SQLAlchemy URL (`postgresql+asyncpg://...`)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class OutboxListener:
    def __init__(self, url: str, on_notification: Callable[[], None], *, limit: int) -> None:
        self.dsn = asyncpg_dsn(url)
        self.on_notification = on_notification
        self.limit = limit
        self._notifications: deque[str] = deque()
        self._conn: Any = None
        # True until connected, and again when the connection drops or too many
        # notifications pile up (they are then dropped): the table must be read.
        self.lost = True

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        await self.close()
        conn = await asyncpg.connect(
            self.dsn,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": APPLICATION_NAME},
        )
        try:
            # The kernel's own check too, for a peer that vanished while we were idle.
            transport = getattr(conn, "_transport", None)
            if transport is not None:
                enable_keepalive(transport.get_extra_info("socket"), KEEPALIVE_IDLE)
            conn.add_termination_listener(self._terminated)
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except BaseException:
            await conn.close(timeout=1)
            raise
        self._conn = conn
        self._notifications.clear()
        self.lost = True  # what committed before LISTEN took effect is only in the table

    def drain(self) -> list[str]:
        items = list(self._notifications)
        self._notifications.clear()
        return items

    def forget(self) -> None:
        """Drop what is queued and read the table again (after a failed publish)."""
        self._notifications.clear()
        self.lost = True

    async def check(self, timeout: float) -> None:
        """A round trip on the listening connection: a connection that died without a word
        (no FIN, no RST) is found out here, and replaced by the caller."""
        if not self.connected:
            return
        try:
            await self._conn.execute("SELECT 1", timeout=timeout)
        except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
            log.warning("outbox listener connection lost (%s)", type(exc).__name__)
            await self.close()
            self.lost = True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.remove_termination_listener(self._terminated)
        try:
            await conn.close(timeout=1)
        except Exception:
            conn.terminate()

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if len(self._notifications) >= self.limit:
            if not self.lost:
                log.warning(
                    "outbox listener: %d notifications queued; reading the table", self.limit
                )
            self.forget()
            return
        self._notifications.append(payload)
        self.on_notification()

    def _terminated(self, conn: Any) -> None:
        if conn is self._conn:
            log.warning("outbox listener connection closed")
            self._conn = None
            self.lost = True
            self.on_notification()
