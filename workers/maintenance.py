"""Housekeeping: published outbox rows are kept for an hour (the window a web process
replays from after a bus outage), then deleted."""

from __future__ import annotations

import asyncio
import logging
import time

from server.lifecycle import cancel
from server.store import outbox
from server.store.db import Database

log = logging.getLogger(__name__)

KEEP_PUBLISHED = 3600.0


class Maintenance:
    def __init__(self, db: Database, interval: float = 60.0) -> None:
        self.db = db
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="maintenance")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                pruned = await self.db.write(outbox.prune, time.time() - KEEP_PUBLISHED)
            except Exception:
                log.exception("outbox pruning failed")
                continue
            if pruned:
                log.info("pruned %d published outbox rows", pruned)
