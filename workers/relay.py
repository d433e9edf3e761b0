"""The outbox relay: publishes committed events in commit order, then marks them published.

Woken right after a commit (in-process signal, or a wake-up message on the bus), with a poll
as the fallback. Publishing is at-least-once (a crash between publish and mark publishes a
batch again); the hub drops the duplicates by outbox id.

A published batch is marked in the same transaction that reads the next one (one
transaction per batch under load); the relay goes idle only once everything it published is
marked."""

from __future__ import annotations

import asyncio
import logging
import time

from server.bus import Bus, BusUnavailable
from server.bus.envelope import pack
from server.lifecycle import cancel
from server.store import outbox
from server.store.db import Database
from workers.lease import Lease, MemoryLease, RedisLease

log = logging.getLogger(__name__)


class Relay:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        lease: Lease,
        *,
        poll_interval: float = 1.0,
        lease_ttl: float = 5.0,
        batch: int = 1000,
    ) -> None:
        self.db = db
        self.bus = bus
        self.lease = lease
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self._unmarked: list[int] = []  # published, not yet marked
        self._stopping = False
        bus.on_wake.append(self.wake)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        # The loop also watches _stopping: a cancel that lands inside redis-py's I/O (the
        # publish) can be swallowed there.
        self._stopping = True
        self._wake.set()
        await cancel(self._task)
        self._task = None
        if self._unmarked:
            # Best effort: what stays unmarked is published again by the next relay.
            try:
                async with asyncio.timeout(self.lease_ttl):
                    await self.db.write(outbox.mark_published, self._unmarked)
                self._unmarked = []
            except Exception:
                log.warning("could not mark %d published events on stop", len(self._unmarked))
        await self.lease.release()

    async def run(self) -> None:
        backoff = 0.05
        lease_checked = 0.0
        while not self._stopping:
            now = time.monotonic()
            if now - lease_checked > self.lease_ttl / 3:
                if not await self.lease.acquire():
                    await self._sleep(min(self.lease_ttl / 3, 1.0))
                    continue
                lease_checked = now
            try:
                count = await self.relay_once()
            except BusUnavailable as exc:
                log.warning("bus unavailable, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay failed, retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if count < self.batch and not self._unmarked:
                await self._sleep(self.poll_interval)

    async def _sleep(self, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands
        # as the wake-up fires (a commit during shutdown), and stop() then waits forever.
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def relay_once(self) -> int:
        """Mark the last batch published, then publish the next batch of unpublished rows;
        returns how many were published."""
        self._wake.clear()
        if self._unmarked:
            rows = await self.db.write(outbox.mark_and_fetch, self._unmarked, self.batch)
            self._unmarked = []
        else:
            rows = await self.db.read(outbox.unpublished, self.batch)
        if not rows:
            return 0
        items = []
        for row in rows:
            payload = pack(
                row["payload"].encode(), outbox_id=row["id"], conversation_id=row["conversation_id"]
            )
            items.extend((channel, payload) for channel in row["channels"])
        await self.bus.publish_durable(items)
        self._unmarked = [row["id"] for row in rows]
        self.published += len(rows)
        return len(rows)


def lease_for(bus: Bus, ttl: float) -> Lease:
    """A Redis lease when processes share a Redis bus; otherwise this process is alone."""
    redis = getattr(bus, "redis", None)
    return RedisLease(redis, ttl=ttl) if redis is not None else MemoryLease()
