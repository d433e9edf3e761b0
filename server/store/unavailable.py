"""When the database cannot answer: which errors mean that, and how an outage is reported.

A call past its deadline (DB_TIMEOUT), a database that refuses or drops connections, a full
disk: none of them is the request's fault, and each passes once the database is back. The
API answers them 503 with Retry-After (server/errors.py) so clients retry, instead of a 500
with a traceback per request. `Outage` logs one line when an incident starts (what failed,
what to check), counts what follows, and logs one line when the database answers again.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("server.store.database")

TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
DISK_FULL = "disk full"

# Seconds between the "still unavailable" lines of one incident.
SUMMARY_INTERVAL = 30.0

_ADVICE = {
    TIMEOUT: "the database did not answer within DB_TIMEOUT: check that it is running and "
    "not overloaded, frozen or waiting on locks",
    UNREACHABLE: "cannot talk to the database: check that it is running and reachable "
    "(DATABASE_URL), and its connection limit",
    DISK_FULL: "the database's disk is full: free space or grow the volume",
}

# SQLite primary result codes (the low byte of sqlite_errorcode).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 5, 6, 10, 13, 14


class DatabaseUnavailable(Exception):
    """A database call that could not be done now; the API answers 503 with Retry-After."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"database unavailable ({kind}){': ' + detail if detail else ''}")
        self.kind = kind


def kind_of(exc: BaseException) -> str | None:
    """TIMEOUT, UNREACHABLE or DISK_FULL when `exc` (or what caused it) means the database
    cannot answer now; None for an error of the request or of the code."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        found = _kind_of_one(current)
        if found is not None:
            return found
        seen += 1
        orig = getattr(current, "orig", None) if isinstance(current, DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def _kind_of_one(exc: BaseException) -> str | None:
    if isinstance(exc, DatabaseUnavailable):
        return exc.kind
    if isinstance(exc, (TimeoutError, PoolTimeout)):
        return TIMEOUT
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return UNREACHABLE
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code == _SQLITE_FULL:
            return DISK_FULL
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):  # the lock wait ran out (see sqlite_inline)
            return TIMEOUT
        if code in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
            return UNREACHABLE
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate == "53100":  # disk_full (e.g. "could not extend file")
            return DISK_FULL
        if sqlstate == "57014":  # query_canceled: statement_timeout
            return TIMEOUT
        if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03", "53300"):
            return UNREACHABLE  # connection lost; shutting down; starting up; too many
        return None
    if isinstance(exc, OSError):  # refused, reset, unreachable host
        return UNREACHABLE
    text = str(exc).lower()
    if type(exc).__name__ in ("InterfaceError", "ConnectionDoesNotExistError") and (
        "closed" in text or "connection" in text
    ):
        return UNREACHABLE
    return None


class Outage:
    """Counters and log lines of database outages (plain integers, for operators): one
    line when an incident starts, one every SUMMARY_INTERVAL while it lasts, one when the
    database answers again. Never a traceback per failed call."""

    def __init__(self) -> None:
        self.incidents = 0
        self.failures = 0
        self.timeouts = 0
        self.unreachable = 0
        self.disk_full = 0
        self.active = False
        # Whether writes failed in this incident: reads may still work (a full disk, a
        # write lock held elsewhere), and only a write that succeeds then ends it.
        self._writes_failed = False
        self._started = 0.0
        self._in_incident = 0
        self._last_summary = 0.0

    def failed(self, kind: str, exc: BaseException, *, write: bool) -> None:
        self.failures += 1
        if kind == TIMEOUT:
            self.timeouts += 1
        elif kind == DISK_FULL:
            self.disk_full += 1
        else:
            self.unreachable += 1
        now = time.monotonic()
        self._in_incident += 1
        self._writes_failed = self._writes_failed or write
        if not self.active:
            self.active = True
            self.incidents += 1
            self._started = self._last_summary = now
            log.error(
                "database unavailable (%s: %s); answering 503 with Retry-After until it "
                "recovers; %s",
                kind,
                _describe(exc),
                _ADVICE.get(kind, ""),
            )
        elif now - self._last_summary >= SUMMARY_INTERVAL:
            self._last_summary = now
            log.error(
                "database still unavailable after %.0f s: %d failed calls so far (last: %s)",
                now - self._started,
                self._in_incident,
                kind,
            )

    def recovered(self, *, write: bool) -> None:
        """A call succeeded: ends the incident, if one is on (callers check `active`) and
        the call was a write or no write failed in it."""
        if not self.active or (self._writes_failed and not write):
            return
        self.active = False
        self._writes_failed = False
        log.warning(
            "database available again after %.1f s; %d calls failed meanwhile",
            time.monotonic() - self._started,
            self._in_incident,
        )
        self._in_incident = 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError):
        exc = exc.orig if isinstance(exc.orig, BaseException) else exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + text[:200] if text else ''}"
