"""The outbox relay: publishes committed events in commit order, then records how far it got.

Woken right after a commit (in-process signal, or a wake-up message on the bus), with a poll
as the fallback. Publishing is at-least-once (a crash between publishing and recording
publishes those events again); the hub drops the duplicates by outbox id.

What the relay has published is one position (`server.store.outbox.Position`, a row of
relay_state), never a mark on each outbox row: a relay that takes over reads it and publishes
what it does not cover, and pruning deletes only what it covers.

On PostgreSQL the relay LISTENs (see `workers.listener`): each commit's notifications carry
its events, in commit order, and the relay publishes them as they come, with no query. It
reads the table only for what committed while it was not listening (at start, after the
listening connection dropped, after a failed publish) and, once a poll interval, for rows left
behind. The position is recorded in the background, every MARK_INTERVAL while events are
published: the database's snapshot, less the transactions whose events are not published yet.

Elsewhere (SQLite, where ids follow commit order) the relay reads the table when woken: the
position past a published batch is recorded in the same transaction that reads the next one
(one transaction per batch under load); the relay goes idle only once it is recorded."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from server.bus import Bus, BusUnavailable
from server.bus.envelope import pack
from server.lifecycle import cancel
from server.store import outbox
from server.store.db import Database
from server.store.engine import engine_for
from server.store.outbox import Position
from server.store.unavailable import DatabaseUnavailable, kind_of
from workers.lease import Lease, MemoryLease, RedisLease
from workers.listener import OutboxListener

log = logging.getLogger(__name__)

# Seconds between two recordings of the position while events are published (PostgreSQL).
MARK_INTERVAL = 0.1
# A row still unpublished this many seconds after it was written has lost its notification
# (the periodic sweep publishes it); younger ones are left to their notification.
SWEEP_AGE = 5.0
# Notifications held before the relay gives up on them and reads the table instead.
NOTIFICATION_LIMIT = 100_000
# PostgreSQL: events published and not yet covered by a recorded position (recording
# fails). Past this the relay stops publishing until recording catches up.
UNRECORDED_LIMIT = 100_000


class LeaseExpired(Exception):
    """The lease is not (or no longer surely) held: this relay must not publish."""


class Relay:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        lease: Lease,
        *,
        poll_interval: float = 1.0,
        lease_ttl: float = 5.0,
        stall_timeout: float = 30.0,
        batch: int = 1000,
    ) -> None:
        self.db = db
        self.bus = bus
        self.lease = lease
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl
        # One round of work (database reads and writes, a publish) taking longer than this is
        # a stuck relay, not a slow one: it gives the lease up so that another can work.
        self.stall_timeout = stall_timeout
        self.stalls = 0
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        # How often a position was recorded.
        self.recorded = 0
        # The position recorded last (None: to be read again, after the lease changed hands).
        self.position: Position | None = None
        self._unmarked: list[int] = []  # SQLite: published, the position not yet past them
        self._stopping = False
        self.listener: OutboxListener | None = None
        # PostgreSQL: published and not covered by the recorded position yet, and those the
        # last recording covered (a table read and the notifications skip both); the
        # background recorder; when the table was last swept.
        self._unrecorded: set[int] = set()
        self._recorded: set[int] = set()
        self._mark_task: asyncio.Task[None] | None = None
        self._swept = 0.0
        if engine_for(db).relay_listens:
            self.listener = OutboxListener(db.url, self.wake, limit=NOTIFICATION_LIMIT)
        else:
            bus.on_wake.append(self.wake)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.lease.on_acquired.append(self.wake)
        self.lease.start()  # renewed in its own task, whatever the database does
        self._task = loop.create_task(self.run(), name="outbox-relay")
        if self.listener is not None:
            self._mark_task = loop.create_task(self._mark_loop(), name="outbox-marker")

    async def stop(self) -> None:
        # The loop also watches _stopping: a cancel that lands inside redis-py's I/O (the
        # publish) can be swallowed there.
        self._stopping = True
        self._wake.set()
        await cancel(self._task)
        self._task = None
        if self.listener is not None:
            await cancel(self._mark_task)
            self._mark_task = None
            await self.listener.close()
        if self.position is not None and (self._unmarked or self._unrecorded):
            # Best effort: what stays unrecorded is published again by the next relay.
            try:
                async with asyncio.timeout(self.lease_ttl):
                    await self._record()
            except Exception:
                log.warning(
                    "could not record the position past %d published events on stop",
                    len(self._unmarked) + len(self._unrecorded),
                )
        await self.lease.release()

    async def run(self) -> None:
        backoff = 0.05
        paused = False
        while not self._stopping:
            if not self.lease.held:
                if self.listener is not None:
                    await self.listener.close()  # a standby does not listen
                    self.listener.forget()
                # Another relay may record positions meanwhile: read it again when back.
                self.position = None
                self._unmarked = []
                if not paused:
                    paused = True
                    log.info("relay paused: it does not hold the lease")
                await self._sleep(min(self.lease_ttl / 4, 1.0))
                continue
            if paused:
                paused = False
                log.info("relay active: it holds the lease")
            guard = asyncio.timeout(self.stall_timeout)
            try:
                async with guard:
                    if self.listener is not None:
                        idle = await self.relay_notified(self.listener)
                    else:
                        idle = await self.relay_once() < self.batch and not self._unmarked
            except LeaseExpired:
                if self.listener is not None:
                    self.listener.forget()
                continue
            except BusUnavailable as exc:
                log.warning("bus unavailable, retrying in %.1fs: %s", backoff, exc)
                await self._failed(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except asyncio.CancelledError:
                raise
            except TimeoutError as exc:
                if guard.expired():
                    await self._stalled()
                    continue
                log.warning("relay: timed out (%r), retrying in %.1fs", exc, backoff)
                await self._failed(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except DatabaseUnavailable as exc:
                # The Database logs an outage once and counts it: no traceback per retry.
                log.debug("relay: %s, retrying in %.1fs", exc, backoff)
                await self._failed(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception as exc:
                if kind_of(exc) is None:
                    log.exception("relay failed, retrying in %.1fs", backoff)
                else:  # the listener's own connection: one line, not a traceback per retry
                    log.warning("relay: database unavailable (%s), retrying in %.1fs", exc, backoff)
                await self._failed(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if idle:
                await self._sleep(self.poll_interval)

    async def _stalled(self) -> None:
        self.stalls += 1
        log.warning(
            "relay stalled: one round of work took over %.0fs (the database or Redis does not "
            "answer); giving the lease up for %.0fs so that another relay can take over",
            self.stall_timeout,
            self.lease_ttl,
        )
        await self.lease.release()
        await self._failed(self.lease_ttl)
        self.lease.start()

    async def _failed(self, backoff: float) -> None:
        if self.listener is not None:
            self.listener.forget()  # what was not published is read from the table again
        await asyncio.sleep(backoff)

    async def _sleep(self, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands
        # as the wake-up fires (a commit during shutdown), and stop() then waits forever.
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _load_position(self) -> Position:
        if self.position is None:
            self.position = await self.db.write(outbox.resume_position)
        return self.position

    async def _record(self) -> None:
        """Record the position past what was published (SQLite: the last batch)."""
        if self.listener is None:
            position = Position.past(max(self._unmarked))
            await self.db.write(outbox.save_position, position)
            self.position, self._unmarked = position, []
        else:
            await self._advance()
        self.recorded += 1

    async def relay_once(self) -> int:
        """Record the position past the last batch, then publish the next batch of rows it
        does not cover; returns how many were published."""
        self._wake.clear()
        position = await self._load_position()
        if self._unmarked:
            position = Position.past(max(self._unmarked))
            rows = await self.db.write(outbox.mark_and_fetch, position, self.batch)
            self.position, self._unmarked = position, []
            self.recorded += 1
        else:
            rows = await self.db.read(outbox.uncovered, position, position.xmax - 1, self.batch)
        if not rows:
            return 0
        await self._publish(rows)
        return len(rows)

    async def _publish(self, rows: list[dict[str, Any]]) -> None:
        """Publish `rows` in order; they are then marked (see _unmarked)."""
        items = []
        for row in rows:
            payload = pack(
                row["payload"].encode(), outbox_id=row["id"], conversation_id=row["conversation_id"]
            )
            items.extend((channel, payload) for channel in row["channels"])
        # Only while the lease is surely held, and done before that ends (or abandoned).
        remaining = self.lease.remaining()
        if remaining <= 0:
            raise LeaseExpired
        try:
            async with asyncio.timeout(None if math.isinf(remaining) else remaining):
                await self.bus.publish_durable(items)
        except TimeoutError:
            raise LeaseExpired from None
        ids = [row["id"] for row in rows]
        if self.listener is None:
            self._unmarked.extend(ids)
        else:
            self._unrecorded.update(ids)
        self.published += len(rows)

    # -- PostgreSQL: LISTEN ---------------------------------------------------------------

    async def relay_notified(self, listener: OutboxListener) -> bool:
        """Publish what was notified, or what the table holds when notifications were lost;
        True when there was nothing to do."""
        self._wake.clear()
        if len(self._unrecorded) >= UNRECORDED_LIMIT:
            # Recording fails: publishing on would only pile up what a takeover repeats.
            listener.forget()
            return True
        if not listener.connected:
            await listener.connect()
        if listener.lost:
            # Listening first, then reading: whatever commits from here on is notified.
            listener.lost = False
            if await self._publish_table(min_age=None):
                return False
        notifications = listener.drain()
        if notifications:
            await self._publish_notified(notifications)
            return False
        now = time.monotonic()
        if now - self._swept >= self.poll_interval:
            self._swept = now
            await listener.check(timeout=self.lease_ttl / 3)
            await self._publish_table(min_age=SWEEP_AGE)
        return True

    def _done(self, outbox_id: int) -> bool:
        """Published by this relay and not forgotten yet (PostgreSQL)."""
        return outbox_id in self._unrecorded or outbox_id in self._recorded

    def _covered(self, row: dict[str, Any]) -> bool:
        """Covered by the position recorded since the table read began (PostgreSQL)."""
        position = self.position
        return position is not None and position.covers(row["xid"])

    async def _publish_table(self, min_age: float | None) -> int:
        """Publish the rows of the table the recorded position does not cover, in id order,
        except those published already (and, with `min_age`, those younger than that)."""
        position = await self._load_position()
        lowest = await self.db.read(outbox.lowest_uncovered, position)
        if lowest is None:
            return 0
        published = 0
        after = lowest - 1
        while not self._stopping:
            rows = await self.db.read(outbox.uncovered, position, after, self.batch)
            if not rows:
                break
            after = rows[-1]["id"]
            oldest = time.time() - min_age if min_age is not None else None
            fresh = [
                row
                for row in rows
                if not self._done(row["id"])
                and not self._covered(row)
                and (oldest is None or row["created_at"] <= oldest)
            ]
            if fresh:
                await self._publish(fresh)
                published += len(fresh)
            if len(rows) < self.batch:
                break
        if published and min_age is not None:
            log.warning("relay: published %d events whose notification was lost", published)
        return published

    async def _publish_notified(self, notifications: list[str]) -> None:
        parsed = [outbox.parse_notification(text) for text in notifications]
        # Skipped: what the table read got first.
        parsed = [(outbox_id, row) for outbox_id, row in parsed if not self._done(outbox_id)]
        missing = [outbox_id for outbox_id, row in parsed if row is None]
        found = await self.db.read(outbox.by_ids, missing) if missing else {}
        # A row missing from the table too was pruned meanwhile: published already.
        rows = [row or found.get(outbox_id) for outbox_id, row in parsed]
        ready = [row for row in rows if row is not None]
        if ready:
            await self._publish(ready)

    async def _mark_loop(self) -> None:
        while True:
            await asyncio.sleep(MARK_INTERVAL)
            if not self._unrecorded or self.position is None or not self.lease.held:
                continue
            try:
                await self._record()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable as exc:  # the Database logs the outage once
                log.debug("recording the relay position: %s", exc)
            except Exception as exc:
                log.warning(
                    "recording the relay position failed (%s); %d published events are not "
                    "covered yet (a relay taking over would publish them again); retrying",
                    exc,
                    len(self._unrecorded),
                )

    async def _advance(self) -> None:
        """PostgreSQL: record the position past the events published so far."""
        old = self.position
        if old is None:
            return
        new, covered = await self.db.write(outbox.advance, old, frozenset(self._unrecorded))
        if self.position is old:  # not dropped meanwhile (the lease changed hands)
            self.position = new
        self._unrecorded -= covered
        # Kept one round more: a notification can trail the table read that published it.
        self._recorded = covered


def lease_for(bus: Bus, ttl: float) -> Lease:
    """A Redis lease when processes share a Redis bus; otherwise this process is alone."""
    redis = getattr(bus, "redis", None)
    return RedisLease(redis, ttl=ttl) if redis is not None else MemoryLease()
