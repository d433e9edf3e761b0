"""The tables, as SQLAlchemy Core metadata: what queries are built from, and what Alembic
compares a database with (server/store/migrations/).

Complete on purpose (keys, foreign keys, unique constraints, indexes with their WHERE,
server defaults): `python -m server new-migration` writes the next revision from the
difference between this metadata and the schema the migrations make, and
tests/test_migrations.py fails when the three (this file, the migrations, schema.sql, the
readable DDL) disagree, on both engines.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)


class JSONText(TypeDecorator[Any]):
    """A JSON document kept in a TEXT column, encoded with orjson."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return orjson.dumps(value).decode()

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return orjson.loads(value)


metadata = MetaData()


def _id() -> Column[int]:
    """BIGSERIAL PRIMARY KEY on PostgreSQL; INTEGER PRIMARY KEY (the rowid) on SQLite."""
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True)


def _default(sql: str) -> Any:
    return text(sql)


def _partial(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index over the rows matching `where`, on both engines."""
    return Index(
        name,
        *columns,
        unique=unique,
        sqlite_where=text(where),
        postgresql_where=text(where),
    )


def _json() -> Any:
    return _default("'{}'")


accounts = Table(
    "accounts",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=_default("'active'")),
    Column("conversation_seq", BigInteger, nullable=False, server_default=_default("0")),
    Column("created_at", Double, nullable=False),
)

users = Table(
    "users",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False, unique=True),
    Column("access_token", Text, nullable=False, unique=True),
    Column("pubsub_token", Text, nullable=False, unique=True),
    Column("availability", Text, nullable=False, server_default=_default("'online'")),
    Column("avatar_url", Text, nullable=False, server_default=_default("''")),
    Column("created_at", Double, nullable=False),
)

account_users = Table(
    "account_users",
    metadata,
    Column("account_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.id"), primary_key=True),
    Column("role", Text, nullable=False, server_default=_default("'agent'")),
)

inboxes = Table(
    "inboxes",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("website_url", Text),
    Column("website_token", Text, nullable=False, unique=True),
    Column("hmac_token", Text, nullable=False),
    Column("hmac_mandatory", Boolean, nullable=False, server_default=_default("FALSE")),
    Column("end_conversation", Boolean, nullable=False, server_default=_default("FALSE")),
    Column("welcome_title", Text, nullable=False, server_default=_default("''")),
    Column("welcome_tagline", Text, nullable=False, server_default=_default("''")),
    Column("widget_color", Text, nullable=False, server_default=_default("'#1f93ff'")),
    Column("elevenlabs_agent_id", Text),
    Column("elevenlabs_api_key", Text),
    # The HMAC secret of ElevenLabs' post-call webhook (POST /webhooks/elevenlabs).
    Column("elevenlabs_webhook_secret", Text),
    Column("created_at", Double, nullable=False),
    # The widget's `attachments` feature: visitors may send files (revision 0003).
    Column("attachments_enabled", Boolean, nullable=False, server_default=_default("TRUE")),
    # Resolving a conversation sends the CSAT survey (revision 0004_labels_csat).
    Column("csat_survey_enabled", Boolean, nullable=False, server_default=_default("FALSE")),
    Index("inboxes_account", "account_id"),
)

inbox_members = Table(
    "inbox_members",
    metadata,
    Column("inbox_id", BigInteger, ForeignKey("inboxes.id"), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.id"), primary_key=True),
)

contacts = Table(
    "contacts",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("name", Text, nullable=False, server_default=_default("''")),
    Column("email", Text),
    Column("phone_number", Text),
    Column("identifier", Text),
    # TRUE once a valid identifier_hash proved the identifier (server/widget/identity.py).
    Column("identifier_verified", Boolean, nullable=False, server_default=_default("FALSE")),
    Column("avatar_url", Text, nullable=False, server_default=_default("''")),
    Column("blocked", Boolean, nullable=False, server_default=_default("FALSE")),
    Column("additional_attributes", JSONText, nullable=False, server_default=_json()),
    Column("custom_attributes", JSONText, nullable=False, server_default=_json()),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("contacts_account_identifier", "account_id", "identifier"),
    # One verified contact per identifier and account.
    _partial(
        "contacts_verified_identifier",
        "account_id",
        "identifier",
        where="identifier_verified",
        unique=True,
    ),
)

contact_inboxes = Table(
    "contact_inboxes",
    metadata,
    _id(),
    Column("contact_id", BigInteger, ForeignKey("contacts.id"), nullable=False),
    Column("inbox_id", BigInteger, ForeignKey("inboxes.id"), nullable=False),
    Column("source_id", Text, nullable=False),
    Column("pubsub_token", Text, nullable=False, unique=True),
    Column("hmac_verified", Boolean, nullable=False, server_default=_default("FALSE")),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("inbox_id", "source_id"),
    Index("contact_inboxes_contact", "contact_id"),
)

conversations = Table(
    "conversations",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("inbox_id", BigInteger, ForeignKey("inboxes.id"), nullable=False),
    Column("display_id", BigInteger, nullable=False),
    Column("contact_id", BigInteger, ForeignKey("contacts.id"), nullable=False),
    Column("contact_inbox_id", BigInteger, ForeignKey("contact_inboxes.id"), nullable=False),
    Column("status", Text, nullable=False, server_default=_default("'open'")),
    Column("assignee_id", BigInteger, ForeignKey("users.id")),
    Column("additional_attributes", JSONText, nullable=False, server_default=_json()),
    Column("custom_attributes", JSONText, nullable=False, server_default=_json()),
    Column("contact_last_seen_at", Double),
    Column("agent_last_seen_at", Double),
    Column("unread_count", Integer, nullable=False, server_default=_default("0")),
    Column("last_activity_at", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    # The titles of its labels (a JSON array; revision 0004_labels_csat).
    Column("labels", JSONText, nullable=False, server_default=_default("'[]'")),
    UniqueConstraint("account_id", "display_id"),
    Index("conversations_contact_inbox", "contact_inbox_id", "id"),
    Index("conversations_inbox_activity", "inbox_id", "last_activity_at"),
)

messages = Table(
    "messages",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("inbox_id", BigInteger, ForeignKey("inboxes.id"), nullable=False),
    Column("conversation_id", BigInteger, ForeignKey("conversations.id"), nullable=False),
    Column("message_type", Integer, nullable=False),
    Column("content_type", Text, nullable=False, server_default=_default("'text'")),
    Column("content", Text),
    Column("private", Boolean, nullable=False, server_default=_default("FALSE")),
    Column("status", Text, nullable=False, server_default=_default("'sent'")),
    Column("sender_type", Text),
    Column("sender_id", BigInteger),
    Column("source_id", Text),
    Column("echo_id", Text),
    Column("external_event_id", Text),
    Column("content_attributes", JSONText, nullable=False, server_default=_json()),
    Column("additional_attributes", JSONText, nullable=False, server_default=_json()),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("conversation_id", "external_event_id"),
    Index("messages_conversation", "conversation_id", "id"),
    # A retried message (the same echo_id from the same sender) is written once.
    _partial(
        "messages_sender_echo",
        "sender_type",
        "sender_id",
        "echo_id",
        where="echo_id IS NOT NULL",
        unique=True,
    ),
)

labels = Table(
    "labels",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=_default("''")),
    Column("color", Text, nullable=False, server_default=_default("'#1f93ff'")),
    Column("show_on_sidebar", Boolean, nullable=False, server_default=_default("TRUE")),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("account_id", "title"),
)

csat_survey_responses = Table(
    "csat_survey_responses",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("inbox_id", BigInteger, ForeignKey("inboxes.id"), nullable=False),
    Column("conversation_id", BigInteger, ForeignKey("conversations.id"), nullable=False),
    Column("message_id", BigInteger, ForeignKey("messages.id"), nullable=False, unique=True),
    Column("contact_id", BigInteger, ForeignKey("contacts.id"), nullable=False),
    Column("assigned_agent_id", BigInteger, ForeignKey("users.id")),
    Column("rating", Integer, nullable=False),
    Column("feedback_message", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("csat_survey_responses_account", "account_id", "id"),
)

# A voice call of a visitor (server/voice/): live while `ended_at` is NULL, one live call per
# contact_inbox at most. `end_signal`: the call was ended elsewhere (another tab, the
# server) and a heartbeat still arriving for it is told to stop (end_requested).
voice_calls = Table(
    "voice_calls",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("inbox_id", BigInteger, ForeignKey("inboxes.id"), nullable=False),
    Column("contact_id", BigInteger, ForeignKey("contacts.id"), nullable=False),
    Column("contact_inbox_id", BigInteger, ForeignKey("contact_inboxes.id"), nullable=False),
    Column("conversation_id", BigInteger, ForeignKey("conversations.id"), nullable=False),
    Column("elevenlabs_conversation_id", Text),
    Column("started_at", Double, nullable=False),
    Column("last_heartbeat_at", Double, nullable=False),
    Column("ended_at", Double),
    Column("end_reason", Text),
    Column("end_signal", Boolean, nullable=False, server_default=_default("FALSE")),
    Column("reconciled_at", Double),
    Index("voice_calls_contact_inbox", "contact_inbox_id", "id"),
    Index("voice_calls_conversation", "conversation_id", "id"),
    _partial("voice_calls_live", "contact_inbox_id", where="ended_at IS NULL", unique=True),
    _partial("voice_calls_heartbeat", "last_heartbeat_at", where="ended_at IS NULL"),
    _partial(
        "voice_calls_elevenlabs",
        "elevenlabs_conversation_id",
        where="elevenlabs_conversation_id IS NOT NULL",
        unique=True,
    ),
)

outbox = Table(
    "outbox",
    metadata,
    _id(),
    Column("conversation_id", BigInteger),
    Column("channels", JSONText, nullable=False),
    Column("event", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    # PostgreSQL: the writing transaction's id, its server default (schema.sql, revision 0002).
    Column("xid", BigInteger, server_default=text("(pg_current_xact_id())::text::bigint")),
    _partial("outbox_xid", "xid", "id", where="xid IS NOT NULL"),
    Index("outbox_created", "created_at"),
)

# The files of a message (revision 0003): where each is kept (server/storage/) and what
# Chatwoot's attachment JSON shows of it.
attachments = Table(
    "attachments",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("message_id", BigInteger, ForeignKey("messages.id"), nullable=False),
    Column("file_type", Text, nullable=False),  # image, audio, video or file
    Column("content_type", Text, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("byte_size", BigInteger, nullable=False),
    Column("storage_key", Text, nullable=False, unique=True),
    Column("thumb_key", Text),
    Column("width", Integer),
    Column("height", Integer),
    Column("created_at", Double, nullable=False),
    Index("attachments_message", "message_id"),
)

relay_state = Table(
    "relay_state",
    metadata,
    Column("name", Text, primary_key=True),
    Column("position", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
)

# What the widget reports about a visitor (POST /widget/events), the newest few per
# contact_inbox (server/store/widget_events.py).
widget_events = Table(
    "widget_events",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("inbox_id", BigInteger, ForeignKey("inboxes.id"), nullable=False),
    Column("contact_id", BigInteger, ForeignKey("contacts.id"), nullable=False),
    Column("contact_inbox_id", BigInteger, ForeignKey("contact_inboxes.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("event_info", JSONText, nullable=False, server_default=_json()),
    Column("created_at", Double, nullable=False),
    Index("widget_events_contact_inbox", "contact_inbox_id", "id"),
    Index("widget_events_contact", "contact_id", "id"),
)
