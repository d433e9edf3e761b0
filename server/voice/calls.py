"""Voice calls, beyond one request: the reconciliation of a call's transcript with
ElevenLabs' own (at the end of a call, from the poll, from the post-call webhook), the
background work an ended call leaves, and the counters /metrics reads.

ElevenLabs is asked about one conversation only: the one linked to the visitor's own call
(never "the newest conversation of the agent", which may be another visitor's). Its answer
is written only if it is the inbox's agent's conversation."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import replace
from typing import Any

from server.store import voice_calls as calls_store
from server.store.db import Database
from server.store.inputs import CallState, CallTranscript, ElevenLabsTurn, Reconciled
from server.store.voice_call_writes import turn_key
from server.store.writes import Store
from server.voice.elevenlabs import ElevenLabs, ElevenLabsError, Transcript

log = logging.getLogger(__name__)

# Reconciliations of ended calls running at once in one process; more wait for a turn, and
# past MAX_PENDING an ended call is left to the post-call webhook (a log line says so).
CONCURRENCY = 4
MAX_PENDING = 1000


# ElevenLabs' statuses of a conversation whose transcript may still grow.
UNFINISHED = frozenset({"initiated", "in-progress", "processing"})


class VoiceCalls:
    def __init__(
        self,
        db: Database,
        store: Store,
        client: ElevenLabs,
        max_turn_length: int,
        *,
        retry_after: float = 30.0,
        attempts: int = 5,
    ) -> None:
        self.db = db
        self.store = store
        self.client = client
        self.max_turn_length = max_turn_length
        self.retry_after = retry_after
        self.attempts = attempts
        self.reconcile_retries = 0
        self.started = 0
        self.ended: Counter[str] = Counter()  # by reason
        self.turns_reconciled = 0
        self.reconcile_failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)

    # -- what call writes did --------------------------------------------------------------

    def observe(self, state: CallState, *, reconcile: bool = True) -> None:
        """Counts what a call write did, and schedules the reconciliation of a call it
        ended (or replaced) unless the caller has the transcript itself (`reconcile`)."""
        if state.started:
            self.started += 1
            log.info("voice call %s started", state.call["id"] if state.call else "?")
        for call in (state.replaced, state.call if state.ended else None):
            if call is not None:
                reason = call["end_reason"] or "unknown"
                self.ended[reason] += 1
                log.info("voice call %s ended (%s)", call["id"], reason)
                if reconcile:
                    self.reconcile_later(call["id"])

    def reconcile_later(self, call_id: int) -> None:
        if len(self._tasks) >= MAX_PENDING:
            log.warning(
                "voice call %s not reconciled: %d reconciliations already pending; its"
                " transcript will come from ElevenLabs' post-call webhook if one is set up",
                call_id,
                len(self._tasks),
            )
            return
        task = asyncio.get_running_loop().create_task(self._reconcile_ended(call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile_ended(self, call_id: int) -> None:
        """Fetch an ended call's transcript until ElevenLabs has all of it: a fetch that
        fails, or finds the conversation still being processed (its turns written so far
        are kept), is tried again after `retry_after` seconds, doubling, `attempts` fetches
        in all; past them the post-call webhook is what completes the call."""
        delay = self.retry_after
        for attempt in range(1, self.attempts + 1):
            done = await self._reconcile_once(call_id, last=attempt == self.attempts)
            if done:
                return
            if attempt < self.attempts:
                self.reconcile_retries += 1
                await asyncio.sleep(delay)
                delay *= 2
        log.warning(
            "voice call %s: ElevenLabs' transcript still incomplete after %d fetches; the"
            " post-call webhook can still complete it",
            call_id,
            self.attempts,
        )

    async def _reconcile_once(self, call_id: int, *, last: bool) -> bool:
        """One fetch of an ended call's transcript; True when nothing is left to fetch."""
        async with self._slots:
            try:
                written = await self.reconcile(call_id, final=True)
            except ElevenLabsError as exc:  # the client logged the request that failed
                log.warning(
                    "voice call %s: its transcript was not fetched (%s); %s",
                    call_id,
                    exc,
                    "the post-call webhook can still complete it" if last else "trying again",
                )
                return False
            except Exception:
                self.reconcile_failures += 1
                log.exception("voice call %s: reconciling its transcript failed", call_id)
                return True
        return not written.unfinished

    async def idle(self) -> None:
        """Waits for the reconciliations under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- reconciliation ----------------------------------------------------------------------

    async def reconcile(self, call_id: int, *, final: bool) -> Reconciled:
        """Fetch the call's ElevenLabs transcript (its linked conversation only) and write
        the turns its conversation lacks. ElevenLabsError when ElevenLabs fails."""
        found = await self.db.read(calls_store.with_inbox, call_id)
        if found is None:
            return Reconciled(0, None, refused="no such call")
        call, inbox = found["call"], found["inbox"]
        el_id = call["elevenlabs_conversation_id"]
        if not el_id:
            return Reconciled(0, None, refused="the call is not linked to ElevenLabs")
        if not inbox["elevenlabs_api_key"]:
            return Reconciled(0, None, refused="no API key configured on this inbox")
        try:
            transcript = await self.client.conversation(inbox["elevenlabs_api_key"], el_id)
        except ElevenLabsError:
            self.reconcile_failures += 1
            raise
        return await self.apply(call, inbox, transcript, final=final)

    async def apply(
        self, call: dict[str, Any], inbox: dict[str, Any], t: Transcript, *, final: bool
    ) -> Reconciled:
        """Write `t` (fetched, or a webhook's) into `call`'s conversation, if it is the
        call's ElevenLabs conversation and the inbox's agent's."""
        if t.conversation_id != call["elevenlabs_conversation_id"]:
            return Reconciled(0, None, refused="not this call's ElevenLabs conversation")
        if inbox["elevenlabs_agent_id"] and t.agent_id != inbox["elevenlabs_agent_id"]:
            log.warning(
                "voice call %s: ElevenLabs conversation %s belongs to agent %r, not the"
                " inbox's; its transcript is not written",
                call["id"],
                t.conversation_id,
                t.agent_id,
            )
            return Reconciled(0, None, refused="not the inbox's agent's conversation")
        turns = tuple(
            ElevenLabsTurn(
                index=index,
                source="user" if role == "user" else "ai",
                content=message[: self.max_turn_length],
                key=turn_key(t.conversation_id, index),
                said_at=t.said_at.get(index),
            )
            for index, role, message in t.turns
        )
        unfinished = t.status in UNFINISHED
        written = await self.store.call_transcript(
            CallTranscript(call["id"], t.conversation_id, turns, final=final and not unfinished)
        )
        written = replace(written, unfinished=unfinished)
        self.turns_reconciled += written.written
        if written.written:
            log.info(
                "voice call %s: %d turns added from ElevenLabs' transcript",
                call["id"],
                written.written,
            )
        return written
