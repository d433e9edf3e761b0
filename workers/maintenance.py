"""Housekeeping: published outbox rows are kept for an hour (the window a web process
replays from after a bus outage), then deleted."""

from __future__ import annotations

import asyncio
import logging
import time

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
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

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
