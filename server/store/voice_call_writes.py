"""Voice calls, written: a heartbeat (which starts a call when the visitor has none), the link
to the ElevenLabs conversation, the end (by the widget, or by the server when heartbeats
stop), and ElevenLabs' transcript written into the call's conversation.

Starting, linking and ending a call change its conversation's row and emit
conversation.updated, whose payload carries the call (payloads.conversation). Locks are
taken in one order, the conversation's row first and then the call's (or the
contact_inbox's, to start one), so two writes about one visitor never wait on each other in
a circle on PostgreSQL."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import contacts as contacts_store
from server.store import conversation_writes, one
from server.store import conversations as conversations_store
from server.store import voice_calls as calls_store
from server.store.inputs import (
    CallEnd,
    CallHeartbeat,
    CallLink,
    CallState,
    CallTranscript,
    ElevenLabsTurn,
    NewMessage,
    Reconciled,
    Row,
    Visitor,
)
from server.store.message_writes import Writing
from server.store.rules import Flood
from server.store.tables import messages, voice_calls

if TYPE_CHECKING:
    from server.store.engine import Engine

KEY_PREFIX = calls_store.KEY_PREFIX
MAX_TURNS = calls_store.MAX_TURNS
# Turns ElevenLabs reports are written whatever the conversation's flood budget: they are
# the record of what was said, not a visitor's traffic.
_NO_FLOOD = Flood(1_000_000)


class CallConflict(Exception):
    """The ElevenLabs conversation is linked to another call."""


def is_link_conflict(exc: BaseException) -> bool:
    """The unique index voice_calls_elevenlabs refused a link (PostgreSQL names the index,
    SQLite its column)."""
    if not isinstance(exc, DBAPIError):
        return False
    text = str(exc.orig)
    return "voice_calls_elevenlabs" in text or "voice_calls.elevenlabs_conversation_id" in text


def turn_key(el_id: str, index: int) -> str:
    return f"{KEY_PREFIX}{el_id}:{index}"


async def _emit_updated(conn: AsyncConnection, conv_id: int, v: Visitor | None) -> dict[str, Any]:
    """conversation.updated for a change of the conversation's call: the row changes (its
    updated_at) under the row lock, which orders it with the conversation's other events."""
    changed = await conversation_writes.change(conn, conv_id)
    known = {"contact": v.contact, "contact_inbox": v.contact_inbox} if v is not None else {}
    await conversation_writes.emit(conn, changed, [events.CONVERSATION_UPDATED], **known)
    return changed


async def _start(
    conn: AsyncConnection, v: Visitor, *, may_open: bool, el_id: str | None = None
) -> CallState:
    """A new live call of the visitor, on the conversation a transcript turn would go to."""
    conv, _ = await conversation_writes.current_or_open(
        conn,
        v,
        additional={"initiated_from": "voice_agent"},
        reuse_resolved=False,
        may_open=may_open,
        lock=True,
    )
    ci_id = v.contact_inbox["id"]
    await contacts_store.lock_contact_inbox(conn, ci_id)
    live = await calls_store.live(conn, ci_id)
    if live is not None:  # another request started it meanwhile (the widget's first
        # heartbeat and its link are sent at once): a link still links it
        if el_id is None or live["elevenlabs_conversation_id"] is not None:
            return CallState(live, conv["display_id"])
        return await _set_link(conn, v, live, el_id)
    now = time.time()
    call = one(
        await conn.execute(
            insert(voice_calls)
            .values(
                account_id=conv["account_id"],
                inbox_id=conv["inbox_id"],
                contact_id=v.contact["id"],
                contact_inbox_id=ci_id,
                conversation_id=conv["id"],
                elevenlabs_conversation_id=el_id,
                started_at=now,
                last_heartbeat_at=now,
                end_signal=False,
            )
            .returning(*voice_calls.c)
        )
    )
    changed = await _emit_updated(conn, conv["id"], v)
    return CallState(call, changed["display_id"], started=True)


async def heartbeat(conn: AsyncConnection, h: CallHeartbeat) -> CallState:
    v = h.visitor
    ci_id = v.contact_inbox["id"]
    now = time.time()
    call = one(
        await conn.execute(
            update(voice_calls)
            .where(voice_calls.c.contact_inbox_id == ci_id, voice_calls.c.ended_at.is_(None))
            .values(last_heartbeat_at=now)
            .returning(*voice_calls.c)
        )
    )
    if call is not None:
        return CallState(call)
    latest = await calls_store.latest_of_visitor(conn, ci_id)
    if latest is not None and latest["end_signal"] and latest["ended_at"] >= now - h.signal_window:
        # Ended elsewhere: this heartbeat's tab is told to stop, once.
        await conn.execute(
            update(voice_calls).where(voice_calls.c.id == latest["id"]).values(end_signal=False)
        )
        return CallState(latest, end_requested=True)
    return await _start(conn, v, may_open=h.may_open)


async def clear_end_signal(conn: AsyncConnection, v: Visitor) -> None:
    """A new call is being set up (voice_signed_url): an earlier call's end must not stop
    the new call's first heartbeat."""
    await conn.execute(
        update(voice_calls)
        .where(
            voice_calls.c.contact_inbox_id == v.contact_inbox["id"],
            voice_calls.c.end_signal.is_(True),
        )
        .values(end_signal=False)
    )


async def link(conn: AsyncConnection, ln: CallLink) -> CallState:
    v = ln.visitor
    ci_id = v.contact_inbox["id"]
    el_id = ln.elevenlabs_conversation_id
    linked = await calls_store.by_elevenlabs_id(conn, el_id)
    if linked is not None:
        if linked["contact_inbox_id"] == ci_id and linked["ended_at"] is None:
            # Linked before: the same answer.
            return CallState(linked, await calls_store.display_id(conn, linked["conversation_id"]))
        raise CallConflict()
    live = await calls_store.live(conn, ci_id)
    replaced = None
    if live is not None and live["elevenlabs_conversation_id"] is not None:
        replaced = (await end(conn, CallEnd("replaced", call_id=live["id"]))).call
        live = None
    if live is None:
        return replace(await _start(conn, v, may_open=ln.may_open, el_id=el_id), replaced=replaced)
    await conversations_store.locked(conn, live["conversation_id"])
    return await _set_link(conn, v, live, el_id)


async def _set_link(conn: AsyncConnection, v: Visitor, live: Row, el_id: str) -> CallState:
    """`live` (its conversation locked by the caller) linked to `el_id`."""
    call = one(
        await conn.execute(
            update(voice_calls)
            .where(voice_calls.c.id == live["id"])
            .values(elevenlabs_conversation_id=el_id)
            .returning(*voice_calls.c)
        )
    )
    changed = await _emit_updated(conn, live["conversation_id"], v)
    return CallState(call, changed["display_id"])


async def end(conn: AsyncConnection, e: CallEnd) -> CallState:
    """Ends the visitor's live call, or the call `e.call_id` (with `stale_before`: only if its
    last heartbeat is older). end_signal is set: a heartbeat still arriving for it (another
    tab, a browser back from a stall) is told to stop."""
    if e.visitor is not None:
        call = await calls_store.live(conn, e.visitor.contact_inbox["id"])
    else:
        call = await calls_store.by_id(conn, e.call_id or 0)
    if call is None or call["ended_at"] is not None:
        return CallState(call)
    await conversations_store.locked(conn, call["conversation_id"])
    stmt = update(voice_calls).where(
        voice_calls.c.id == call["id"], voice_calls.c.ended_at.is_(None)
    )
    if e.stale_before is not None:
        stmt = stmt.where(voice_calls.c.last_heartbeat_at < e.stale_before)
    ended = one(
        await conn.execute(
            stmt.values(ended_at=time.time(), end_reason=e.reason, end_signal=True).returning(
                *voice_calls.c
            )
        )
    )
    if ended is None:  # ended, or alive again, meanwhile
        return CallState(call)
    changed = await _emit_updated(conn, call["conversation_id"], e.visitor)
    return CallState(ended, changed["display_id"], ended=True)


# -- ElevenLabs' transcript ----------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.split())


def align(
    turns: tuple[ElevenLabsTurn, ...], posted: list[dict[str, Any]]
) -> tuple[dict[int, int], list[ElevenLabsTurn]]:
    """Which of ElevenLabs' turns the browser posted (`posted`: the call's turns without a
    key, by id), and which it never did. The browser's turns are a subsequence of the
    transcript: each is matched, in order, to the next turn with its role and words; one that
    matches no turn left is passed over. Returns ({message id: turn index}, missing turns)."""
    wanted = [(t.source, _norm(t.content)) for t in turns]
    have = [(m["content_attributes"].get("role"), _norm(m["content"] or "")) for m in posted]
    matched: dict[int, int] = {}
    missing: list[ElevenLabsTurn] = []
    p = 0
    for i, turn in enumerate(turns):
        while p < len(have) and have[p] not in wanted[i:]:
            p += 1
        if p < len(have) and have[p] == wanted[i]:
            matched[posted[p]["id"]] = turn.index
            p += 1
        else:
            missing.append(turn)
    return matched, missing


def place(
    turns: tuple[ElevenLabsTurn, ...], written: dict[int, float], now: float
) -> dict[int, float]:
    """When each of `turns` (not written yet) is dated, by its index: `written` holds the
    created_at of the call's turns already written, by index. A turn is dated when ElevenLabs
    says it was said if that falls strictly between the written turns around it, else spread
    evenly between them; so every list sorted by created_at shows the call in the order it
    was said, whatever the clocks say. No turn is dated after `now` (unless the turn before
    it already is)."""
    by_index = {t.index: t for t in turns}
    order = sorted(set(written) | set(by_index))
    placed: dict[int, float] = {}
    lower: float | None = None
    for pos, index in enumerate(order):
        if index in written:
            lower = written[index]
            continue
        later = [i for i in order[pos + 1 :] if i in written]
        upper = written[later[0]] if later else None
        gap = len([i for i in order[pos:] if i in by_index and (not later or i < later[0])])
        if upper is not None:
            hi = upper
        elif lower is None or lower < now:
            hi = now
        else:  # the turn before is dated ahead of this clock: just after it
            hi = lower + 0.001 * (gap + 1)
        at = by_index[index].said_at
        if at is None or not at < hi or (lower is not None and not lower < at):
            lo = lower if lower is not None else hi - gap - 1
            at = lo + (hi - lo) / (gap + 1)
        placed[index] = lower = at
    return placed


async def write_transcript(conn: AsyncConnection, engine: Engine, t: CallTranscript) -> Reconciled:
    """Every turn of ElevenLabs' transcript the call's conversation lacks, written in the
    transcript's order under the conversation's row lock (a poll, the end of the call and
    the webhook at once write each turn once: a written turn has its key), each dated in its
    place (`place`). The browser's turns it matches get their position (content_attributes
    .turn) and the call, when they were posted before the call started."""
    call = await calls_store.by_id(conn, t.call_id)
    if call is None or call["elevenlabs_conversation_id"] != t.elevenlabs_conversation_id:
        return Reconciled(0, None, refused="the call is not linked to this ElevenLabs conversation")
    conv = await conversations_store.locked(conn, call["conversation_id"])
    contact, ci = await contacts_store.identity_of(conn, conv["contact_inbox_id"])
    existing = await calls_store.turns_of_call(conn, call, MAX_TURNS)
    keys = {m["external_event_id"] for m in existing if m["external_event_id"]}
    posted = [m for m in existing if not (m["external_event_id"] or "").startswith(KEY_PREFIX)]
    todo = tuple(turn for turn in t.turns[:MAX_TURNS] if turn.key not in keys)
    matched, missing = align(todo, posted)
    by_id = {m["id"]: m for m in posted}
    written = {
        m["content_attributes"]["turn"]: m["created_at"]
        for m in existing
        if (m["external_event_id"] or "").startswith(KEY_PREFIX)
        and isinstance(m["content_attributes"].get("turn"), int)
    }
    for msg_id, index in matched.items():
        row = by_id[msg_id]
        written[index] = row["created_at"]
        attrs = row["content_attributes"]
        if attrs.get("turn") != index or attrs.get("voice_call_id") != call["id"]:
            await conn.execute(
                update(messages)
                .where(messages.c.id == msg_id)
                .values(content_attributes={**attrs, "turn": index, "voice_call_id": call["id"]})
            )
    now = time.time()
    dated = place(tuple(missing), written, now)
    for turn in missing:
        user_turn = turn.source == "user"
        new = NewMessage(
            message_type=events.INCOMING if user_turn else events.OUTGOING,
            content=turn.content,
            sender_type="Contact" if user_turn else None,
            sender_id=contact["id"] if user_turn else None,
            content_attributes={
                "voice_transcript": True,
                "role": turn.source,
                "voice_call_id": call["id"],
                "turn": turn.index,
            },
            external_event_id=turn.key,
            created_at=dated[turn.index],
        )
        await engine.write_message(conn, conv["id"], Writing(new, contact, ci, _NO_FLOOD, now))
    if t.final:
        await conn.execute(
            update(voice_calls).where(voice_calls.c.id == call["id"]).values(reconciled_at=now)
        )
    return Reconciled(len(missing), conv["display_id"])
