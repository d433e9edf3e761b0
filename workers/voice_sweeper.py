"""Ends the voice calls whose heartbeats stopped (a closed tab, a crashed browser, a lost
network): past VOICE_HEARTBEAT_TIMEOUT seconds without one, the call is ended with reason
"heartbeat_lost" (conversation.updated tells the agents) and its transcript is reconciled
with ElevenLabs' (server/voice/calls.py).

It runs where the relay runs (the web process on the embedded default, `python -m workers`
in a scaled deploy), and only while that relay holds the lease, so that one process ends a
call once."""

from __future__ import annotations

import asyncio
import logging
import time

from server.lifecycle import cancel
from server.store import voice_calls as calls_store
from server.store.inputs import CallEnd
from server.voice.calls import VoiceCalls
from workers.lease import Lease

log = logging.getLogger(__name__)

# Calls ended per round: a backlog (after a stop) is worked off over a few rounds.
SWEEP_CHUNK = 100


def sweep_interval(timeout: float) -> float:
    """A quarter of the timeout (a call outlives its last heartbeat by at most 1.25 times
    it), from 0.5 s to 30 s."""
    return min(30.0, max(0.5, timeout / 4))


class VoiceSweeper:
    def __init__(
        self, voice: VoiceCalls, *, timeout: float, lease: Lease, interval: float | None = None
    ) -> None:
        self.voice = voice
        self.timeout = timeout
        self.lease = lease
        self.interval = sweep_interval(timeout) if interval is None else interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="voice-sweeper")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def run_once(self) -> int:
        """End the calls silent for longer than the timeout; returns how many (0 while
        another process's relay holds the lease)."""
        if not self.lease.held:
            return 0
        before = time.time() - self.timeout
        stale = await self.voice.db.read(calls_store.stale, before, SWEEP_CHUNK)
        ended = 0
        for call in stale:
            state = await self.voice.store.end_call(
                CallEnd("heartbeat_lost", call_id=call["id"], stale_before=before)
            )
            if state.ended:
                ended += 1
                self.voice.observe(state)
        return ended

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                ended = await self.run_once()
            except Exception:
                log.exception("ending voice calls without heartbeats failed; trying again")
                continue
            if ended:
                log.info("ended %d voice calls whose heartbeats stopped", ended)
