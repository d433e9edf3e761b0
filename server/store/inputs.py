"""What each kind of write is given, as one frozen value, and what it gives back.

A handler parses and validates its request into one of these, makes the one store call of its
kind (server/store/writes.py), and renders what comes back. The values hold rows as read
(mappings); the store never changes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.events import INCOMING

Row = Mapping[str, Any]

# -- who and which conversation ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visitor:
    """A visitor as a widget request knows them (server/widget/context.py). A write about
    "the visitor's conversation" means their current one (rules.latest_conversation_id)."""

    inbox: Row
    contact: Row
    contact_inbox: Row


@dataclass(frozen=True, slots=True)
class AgentsConversation:
    """A conversation as an agent names it: by display_id, found only within the agent's
    account and the inboxes the agent sees (server/agent/auth.py)."""

    account_id: int
    inbox_ids: tuple[int, ...]
    display_id: int


Conversation = Visitor | AgentsConversation


# -- messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewAttachment:
    """A file already in storage (server/uploads.py put it there), to be recorded with its
    message. `data_url` and `thumb_url` were signed before the write: the message.created
    event, built once inside the write, carries them."""

    file_type: str  # image, audio, video or file
    content_type: str
    file_name: str
    byte_size: int
    storage_key: str
    thumb_key: str | None
    width: int | None
    height: int | None
    data_url: str
    thumb_url: str


@dataclass(slots=True)
class NewMessage:
    """A message as its writer chose it; the store adds its conversation, id, status and
    times (message_writes.message_row). Built by the store from each kind's value, on the
    hot path: not frozen (a frozen dataclass costs about 1 µs more to build), never changed."""

    message_type: int
    content: str | None
    sender_type: str | None = None
    sender_id: int | None = None
    content_type: str = "text"
    content_attributes: Row = field(default_factory=dict)
    private: bool = False
    echo_id: str | None = None
    external_event_id: str | None = None
    attachments: tuple[NewAttachment, ...] = ()
    # When it was said, if not now: a voice turn ElevenLabs' transcript adds after the fact
    # is dated between the turns around it, so lists sorted by created_at show it in place.
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class VisitorMessage:
    """POST /widget/messages: to the visitor's current conversation, which an incoming message
    reopens when resolved or snoozed; the visitor's first message opens one, with `opens_with`
    as its additional_attributes. The visitor is found inside the write, by inbox and
    source_id (the JWT's): the busiest write makes no read before it."""

    inbox: Row
    source_id: str
    content: str | None  # None: files only
    echo_id: str | None
    reply_to: int | None
    opens_with: Row
    flood_limit: int
    attachments: tuple[NewAttachment, ...] = ()

    def message(self, contact_id: int) -> NewMessage:
        return NewMessage(
            message_type=INCOMING,
            content=self.content,
            sender_type="Contact",
            sender_id=contact_id,
            content_attributes={"in_reply_to": self.reply_to},
            echo_id=self.echo_id,
            attachments=self.attachments,
        )


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """An agent's reply or private note (never reopens a conversation)."""

    conversation: AgentsConversation
    author: Row  # the agent's user row
    message_type: int
    content: str | None  # None: files only
    content_type: str
    content_attributes: Row
    private: bool
    echo_id: str | None
    flood_limit: int
    attachments: tuple[NewAttachment, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptTurn:
    """One turn of a voice call (`source`: "user", the visitor; "ai", the voice agent). With
    no usable conversation (none, or the current one resolved) the turn opens one tagged
    initiated_from=voice_agent, but only with `may_open` (else WouldOpen: the caller spends
    the budget of new conversations first). `event_id` makes a retried turn one message;
    without one, a turn identical to the last turn of its role in the same call (or, with
    no live call, the same conversation) less than `duplicate_window` seconds old is that
    turn again (the fork's duplicate guard)."""

    visitor: Visitor
    source: str
    content: str
    event_id: str | None
    flood_limit: int
    may_open: bool = False
    duplicate_window: float = 0.0


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A written message (or, for a retried one, the original): its row, its conversation's
    display_id, and its sender's payload (payloads.sender)."""

    message: Row
    display_id: int
    sender: Row | None
    attachments: tuple[Row, ...] = ()  # its attachment rows


@dataclass(frozen=True, slots=True)
class WrittenTurn:
    id: int
    display_id: int
    duplicate: bool  # written before (the same event_id, or a repeated turn): that message


# -- conversations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewConversation:
    """POST /widget/conversations: always a new conversation, with the visitor's first message,
    after the contact's changes (Chatwoot's ContactIdentifyAction)."""

    visitor: Visitor
    contact_changes: Row
    custom_attributes: Row
    additional_attributes: Row
    content: str
    echo_id: str | None
    flood_limit: int


@dataclass(frozen=True, slots=True)
class OpenedConversation:
    conversation: Row
    messages: list[tuple[Row, Row | None]]  # what the visitor sees of it, with each sender
    contact: Row  # as changed


@dataclass(frozen=True, slots=True)
class StatusChange:
    """`status`, or with None: open <-> resolved (decided under the row lock, so two toggles at
    once end where they started). `actor`: the agent who changes it (its activity line says
    so); None for the visitor."""

    conversation: Conversation
    status: str | None
    actor: Row | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """An agent assigns the conversation to `assignee_id` (None: unassigns it). The assignee
    must answer the conversation's inbox (a member of it, or an administrator of the
    account): checked inside the write, against the conversation found there."""

    conversation: AgentsConversation
    assignee_id: int | None
    actor: Row


@dataclass(frozen=True, slots=True)
class ContactEdit:
    """An agent edits a contact of its account, seen in one of its inboxes: `changes` holds
    only the fields sent (name, email, phone_number), checked by the handler."""

    account_id: int
    inbox_ids: tuple[int, ...]
    contact_id: int
    changes: Row


@dataclass(frozen=True, slots=True)
class AttributeChange:
    """The visitor's custom attributes: `replace` sets the whole map (only while the
    conversation is not resolved: Chatwoot acts on the open conversation); `remove` drops
    keys."""

    visitor: Visitor
    replace: Row | None = None
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MarkRead:
    """The visitor (contact_last_seen_at; agent messages become `read`, with events) or an
    agent (agent_last_seen_at, unread_count 0; no event, as Chatwoot) has seen the
    conversation."""

    conversation: Conversation


@dataclass(frozen=True, slots=True)
class LabelChange:
    """The conversation's labels: `replace` sets the whole set (an agent); `add` or `remove`
    one title (the widget's $chatwoot.setLabel / removeLabel: a title the account has no
    label of is ignored, as Chatwoot does)."""

    conversation: Conversation
    replace: tuple[str, ...] | None = None
    add: str | None = None
    remove: str | None = None


# -- labels and answers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewLabel:
    """An account's label (server/labels.py checked the title)."""

    account_id: int
    title: str
    description: str
    color: str
    show_on_sidebar: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """PATCH /widget/messages/:id: the visitor's answer to an interactive message of their
    own conversations in this inbox (server/interactive.py checks it against the message,
    inside the write). `email`: contact.email and `values`: submitted_values, as sent."""

    visitor: Visitor
    message_id: int
    values: Any
    email: str | None


@dataclass(frozen=True, slots=True)
class AnsweredMessage:
    message: Row
    contact: Row  # as the answer left it (an input_email answer may set its email)


# -- contacts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactAttributeRemoval:
    """POST /widget/contact/destroy_custom_attributes: drop `keys` from the visitor's contact's
    custom attributes (a key it does not have is ignored, as Chatwoot's `excluding`)."""

    visitor: Visitor
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WidgetEvent:
    """POST /widget/events: an event the widget reports about the visitor (e.g.
    `webwidget.triggered`), recorded for agents; the oldest past `keep` per contact_inbox go."""

    visitor: Visitor
    name: str
    info: Row
    keep: int


# -- voice calls -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallHeartbeat:
    """voice_heartbeat: the visitor's live call is alive now; with none, a call starts on the
    visitor's current conversation (or one opened for it, with `may_open`, as a transcript
    turn's), unless a call of theirs was just ended elsewhere (`end_signal`, within
    `signal_window` seconds): then that end is answered instead (end_requested)."""

    visitor: Visitor
    signal_window: float
    may_open: bool = False


@dataclass(frozen=True, slots=True)
class CallLink:
    """voice_link_elevenlabs: the ElevenLabs conversation of the visitor's call (starting one
    as a heartbeat does). A live call linked to another ElevenLabs conversation is ended
    ("replaced") and a new one starts."""

    visitor: Visitor
    elevenlabs_conversation_id: str
    may_open: bool = False


@dataclass(frozen=True, slots=True)
class CallEnd:
    """The end of a call: the visitor's live one (`visitor`), or the call `call_id` (the
    server's, when its heartbeats stopped before `stale_before`). `reason`: widget,
    heartbeat_lost, replaced."""

    reason: str
    visitor: Visitor | None = None
    call_id: int | None = None
    stale_before: float | None = None


@dataclass(frozen=True, slots=True)
class ElevenLabsTurn:
    """One turn of ElevenLabs' own transcript: its position, who spoke ("user" or "ai").
    `key` is stable for the turn (external_event_id): written once, whoever writes it."""

    index: int
    source: str
    content: str
    key: str
    said_at: float | None = None  # epoch seconds, when ElevenLabs dates the turn


@dataclass(frozen=True, slots=True)
class CallTranscript:
    """ElevenLabs' transcript of the call `call_id` (linked to `elevenlabs_conversation_id`):
    every turn not written yet is written, in order. `final`: the call is over and this is
    its whole transcript (reconciled_at is set)."""

    call_id: int
    elevenlabs_conversation_id: str
    turns: tuple[ElevenLabsTurn, ...]
    final: bool


@dataclass(frozen=True, slots=True)
class CallState:
    """A call as a call write left it (None: there was none), its conversation's display_id,
    and what the write did: `started`, `ended` (this write ended it), `end_requested` (a
    heartbeat told to stop), `replaced` (the call a link ended first)."""

    call: Row | None
    display_id: int | None = None
    started: bool = False
    ended: bool = False
    end_requested: bool = False
    replaced: Row | None = None


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What a transcript write did: the turns it wrote, and the conversation's display_id."""

    written: int
    display_id: int | None
    refused: str | None = None  # why nothing was written (the call is unknown, not linked...)
    unfinished: bool = False  # ElevenLabs was still processing the call: more turns may come
