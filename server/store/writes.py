"""The store's door for writes: one call per kind of write, each given one value
(server/store/inputs.py) and running in one transaction of its own (a visitor's message on
PostgreSQL: first in none, see engine/postgresql.py). Handlers parse, make their one call,
and render what it returns.

A write with an `echo_id` the writer already used (a retry) writes nothing and returns what
the first attempt wrote: the unique index refuses the second write, and only then is the
original read (`_original`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.errors import unprocessable
from server.store import (
    answers,
    assignment_writes,
    contact_writes,
    conversation_writes,
    label_writes,
    message_writes,
    status_writes,
    voice_call_writes,
    widget_events,
)
from server.store import messages as messages_store
from server.store.db import Database, is_unique_violation
from server.store.engine import engine_for
from server.store.inputs import (
    AgentMessage,
    Answer,
    AnsweredMessage,
    Assignment,
    AttributeChange,
    CallEnd,
    CallHeartbeat,
    CallLink,
    CallState,
    CallTranscript,
    ContactAttributeRemoval,
    ContactEdit,
    LabelChange,
    MarkRead,
    NewConversation,
    NewLabel,
    OpenedConversation,
    Reconciled,
    Row,
    SentMessage,
    StatusChange,
    TranscriptTurn,
    Visitor,
    VisitorMessage,
    WidgetEvent,
    WrittenTurn,
)

T = TypeVar("T")

WouldOpen = conversation_writes.WouldOpen
CallConflict = voice_call_writes.CallConflict


class Store:
    """The writes of one Database. Its engine (engine/) is chosen here, once, when the process
    builds its services; nothing else asks which engine runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.engine = engine_for(db)  # chosen once, for this database

    def wake_relay_after_commits(self, wake: Callable[[], None]) -> None:
        """How this process's relay learns of a commit with events (the engine's way)."""
        self.engine.wake_relay_after_commits(self.db, wake)

    async def visitor_message(self, m: VisitorMessage) -> SentMessage | None:
        """None: no such visitor."""
        try:
            return await self.engine.visitor_message(self.db, m)
        except Exception as exc:
            return await _original(
                exc,
                m.echo_id,
                lambda echo_id: self.db.read(
                    messages_store.visitor_original, m.inbox["id"], m.source_id, echo_id
                ),
            )

    async def agent_message(self, m: AgentMessage) -> SentMessage | None:
        """None: the agent sees no such conversation."""
        try:
            return await self.db.write(message_writes.agent_message, self.engine, m)
        except Exception as exc:
            return await _original(
                exc,
                m.echo_id,
                lambda echo_id: self.db.read(messages_store.agent_original, m.author, echo_id),
            )

    async def transcript_turn(self, t: TranscriptTurn) -> WrittenTurn:
        """Raises WouldOpen when the turn needs a new conversation and `t.may_open` is False."""
        return await self.db.write(message_writes.transcript_turn, self.engine, t)

    async def open_conversation(self, n: NewConversation) -> OpenedConversation:
        try:
            return await self.db.write(message_writes.open_with_message, self.engine, n)
        except Exception as exc:
            return await _original(
                exc,
                n.echo_id,
                lambda echo_id: self.db.read(messages_store.opened_by, n.visitor, echo_id),
            )

    async def change_status(self, s: StatusChange) -> Row | None:
        """The conversation as it is now; None: no such conversation."""
        return await self.db.write(status_writes.change_status, self.engine, s)

    async def assign(self, a: Assignment) -> tuple[Row, Row | None] | None:
        """(the conversation as it is now, its assignee); None: no such conversation. 422
        when the assignee does not answer the conversation's inbox."""
        return await self.db.write(assignment_writes.assign, self.engine, a)

    async def edit_contact(self, e: ContactEdit) -> Row | None:
        """The contact as it is now; None: the agent sees no such contact. 422 when the
        email is another contact's."""
        return await self.db.write(contact_writes.edit, e)

    async def change_attributes(self, a: AttributeChange) -> Row | None:
        """The conversation as it is now; None: no conversation to change."""
        return await self.db.write(conversation_writes.change_attributes, a)

    async def mark_read(self, r: MarkRead) -> bool:
        """False: no such conversation."""
        return await self.db.write(conversation_writes.mark_read, r)

    async def create_label(self, n: NewLabel) -> Row:
        """422 when the title is taken (also when another create took it first)."""
        try:
            return await self.db.write(label_writes.create_label, n)
        except Exception as exc:
            if is_unique_violation(exc):
                raise unprocessable(label_writes.TAKEN) from None
            raise

    async def change_labels(self, c: LabelChange) -> Row | None:
        """The conversation as it is now; None: no such conversation."""
        return await self.db.write(label_writes.change_labels, c)

    async def answer_message(self, a: Answer) -> AnsweredMessage | None:
        """None: the visitor has no such message."""
        return await self.db.write(answers.answer_message, a)

    async def remove_contact_attributes(self, r: ContactAttributeRemoval) -> Row:
        """The visitor's contact as it is now."""
        return await self.db.write(contact_writes.remove_attributes, r)

    async def record_widget_event(self, e: WidgetEvent) -> None:
        await self.db.write(widget_events.record, e)

    # -- voice calls (server/store/voice_call_writes.py) --

    async def call_heartbeat(self, h: CallHeartbeat) -> CallState:
        """Raises WouldOpen as transcript_turn does, when the call needs a new conversation."""
        return await self.db.write(voice_call_writes.heartbeat, h)

    async def link_call(self, ln: CallLink) -> CallState:
        """Raises CallConflict when the ElevenLabs conversation is another call's; WouldOpen
        as call_heartbeat."""
        try:
            return await self.db.write(voice_call_writes.link, ln)
        except voice_call_writes.CallConflict:
            raise
        except Exception as exc:
            # Two links of one ElevenLabs conversation at once: the unique index refused the
            # second (voice_calls_elevenlabs).
            if voice_call_writes.is_link_conflict(exc):
                raise voice_call_writes.CallConflict() from None
            raise

    async def end_call(self, e: CallEnd) -> CallState:
        return await self.db.write(voice_call_writes.end, e)

    async def clear_call_signal(self, v: Visitor) -> None:
        await self.db.write(voice_call_writes.clear_end_signal, v)

    async def call_transcript(self, t: CallTranscript) -> Reconciled:
        return await self.db.write(voice_call_writes.write_transcript, self.engine, t)


async def _original(
    exc: Exception, echo_id: str | None, original: Callable[[str], Awaitable[T | None]]
) -> T:
    """For a write that raised `exc`: what its first attempt wrote when `exc` says the
    echo_id was used before (or the flood check refused what may be its own first attempt,
    see messages.is_retry); otherwise `exc` again. Only this error path pays for the read."""
    if echo_id is None or not messages_store.is_retry(exc, echo_id):
        raise exc
    found = await original(echo_id)
    if found is None:
        raise exc
    return found
