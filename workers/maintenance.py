"""Housekeeping: published outbox rows are kept for `retention` seconds (the window a web
process replays from after losing the bus, see Hub._replay), then deleted.

It runs wherever the relay runs (the web process on the embedded default, `python -m
workers` in a scaled deploy), and only while that relay holds the lease, so that several
workers do not all delete the same rows."""

from __future__ import annotations

import asyncio
import logging
import time

from server.lifecycle import cancel
from server.store import outbox
from server.store.db import Database
from workers.lease import Lease

log = logging.getLogger(__name__)

# Rows deleted per write: each chunk is a write of its own, so a large backlog (after the
# retention was lowered, or a long stop) is deleted without one long transaction holding
# up the requests queued behind it.
PRUNE_CHUNK = 1000


def prune_interval(retention: float) -> float:
    """A tenth of the retention (rows then live at most 1.1 times it), from 1 s to 60 s."""
    return min(60.0, max(1.0, retention / 10))


class Maintenance:
    def __init__(
        self, db: Database, *, retention: float, lease: Lease, interval: float | None = None
    ) -> None:
        self.db = db
        self.retention = retention
        self.lease = lease
        self.interval = prune_interval(retention) if interval is None else interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="maintenance")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def run_once(self) -> int:
        """Delete the published rows past the retention, a chunk at a time; returns how many
        (0 while another process's relay holds the lease)."""
        if not self.lease.held:
            return 0
        before = time.time() - self.retention
        pruned = 0
        while True:
            n = await self.db.write(outbox.prune, before, PRUNE_CHUNK)
            pruned += n
            if n < PRUNE_CHUNK or not self.lease.held:
                return pruned

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                pruned = await self.run_once()
            except Exception:
                log.exception("outbox pruning failed")
                continue
            if pruned:
                log.info("pruned %d published outbox rows", pruned)
