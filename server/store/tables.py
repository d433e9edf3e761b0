"""SQLAlchemy Core mirrors of the tables in schema.sql, for building queries.

schema.sql stays the one source of the DDL; tests/test_schema.py checks these mirrors
against the tables the DDL actually creates, on both engines.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    TypeDecorator,
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
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True)


accounts = Table(
    "accounts",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("conversation_seq", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("access_token", Text, nullable=False),
    Column("pubsub_token", Text, nullable=False),
    Column("availability", Text, nullable=False),
    Column("avatar_url", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

account_users = Table(
    "account_users",
    metadata,
    Column("account_id", BigInteger, primary_key=True),
    Column("user_id", BigInteger, primary_key=True),
    Column("role", Text, nullable=False),
)

inboxes = Table(
    "inboxes",
    metadata,
    _id(),
    Column("account_id", BigInteger, nullable=False),
    Column("name", Text, nullable=False),
    Column("website_url", Text),
    Column("website_token", Text, nullable=False),
    Column("hmac_token", Text, nullable=False),
    Column("hmac_mandatory", Boolean, nullable=False),
    Column("end_conversation", Boolean, nullable=False),
    Column("welcome_title", Text, nullable=False),
    Column("welcome_tagline", Text, nullable=False),
    Column("widget_color", Text, nullable=False),
    Column("elevenlabs_agent_id", Text),
    Column("elevenlabs_api_key", Text),
    Column("created_at", Float, nullable=False),
)

inbox_members = Table(
    "inbox_members",
    metadata,
    Column("inbox_id", BigInteger, primary_key=True),
    Column("user_id", BigInteger, primary_key=True),
)

contacts = Table(
    "contacts",
    metadata,
    _id(),
    Column("account_id", BigInteger, nullable=False),
    Column("name", Text, nullable=False),
    Column("email", Text),
    Column("phone_number", Text),
    Column("identifier", Text),
    Column("identifier_verified", Boolean, nullable=False),
    Column("avatar_url", Text, nullable=False),
    Column("blocked", Boolean, nullable=False),
    Column("additional_attributes", JSONText, nullable=False),
    Column("custom_attributes", JSONText, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

contact_inboxes = Table(
    "contact_inboxes",
    metadata,
    _id(),
    Column("contact_id", BigInteger, nullable=False),
    Column("inbox_id", BigInteger, nullable=False),
    Column("source_id", Text, nullable=False),
    Column("pubsub_token", Text, nullable=False),
    Column("hmac_verified", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    _id(),
    Column("account_id", BigInteger, nullable=False),
    Column("inbox_id", BigInteger, nullable=False),
    Column("display_id", BigInteger, nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("contact_inbox_id", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("assignee_id", BigInteger),
    Column("additional_attributes", JSONText, nullable=False),
    Column("custom_attributes", JSONText, nullable=False),
    Column("contact_last_seen_at", Float),
    Column("agent_last_seen_at", Float),
    Column("unread_count", Integer, nullable=False),
    Column("last_activity_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    _id(),
    Column("account_id", BigInteger, nullable=False),
    Column("inbox_id", BigInteger, nullable=False),
    Column("conversation_id", BigInteger, nullable=False),
    Column("message_type", Integer, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("content", Text),
    Column("private", Boolean, nullable=False),
    Column("status", Text, nullable=False),
    Column("sender_type", Text),
    Column("sender_id", BigInteger),
    Column("source_id", Text),
    Column("echo_id", Text),
    Column("external_event_id", Text),
    Column("content_attributes", JSONText, nullable=False),
    Column("additional_attributes", JSONText, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    _id(),
    Column("conversation_id", BigInteger),
    Column("channels", JSONText, nullable=False),
    Column("event", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("xid", BigInteger),
)

relay_state = Table(
    "relay_state",
    metadata,
    Column("name", Text, primary_key=True),
    Column("position", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)
