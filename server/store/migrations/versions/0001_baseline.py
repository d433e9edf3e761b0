"""Baseline: the schema as it was when migrations began (schema.sql of that day).

On an empty database it creates that schema. A database without `alembic_version` but with
our tables was made before migrations, by `schema.sql` applied at start (any earlier version
of it): this revision completes it to the baseline the way those versions did at start, so
it is then stamped 0001 and upgraded like any other. Hence every statement creates only
what is missing, and the two later additions of that time are made with their backfills:

- contacts.identifier_verified (verified where every identity of the contact was
  HMAC-verified, one per identifier: the oldest, as the unique index requires);
- messages_sender_echo, before which a retried message was written twice: the retries keep
  their content and lose their echo_id (the first of each keeps it).

Frozen: never edit it. A later change is a new revision (docs/migrations.md).

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE IF NOT EXISTS accounts (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    conversation_seq BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    access_token TEXT NOT NULL UNIQUE,
    pubsub_token TEXT NOT NULL UNIQUE,
    availability TEXT NOT NULL DEFAULT 'online',
    avatar_url TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS account_users (
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL DEFAULT 'agent',
    PRIMARY KEY (account_id, user_id)
);

CREATE TABLE IF NOT EXISTS inboxes (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    website_url TEXT,
    website_token TEXT NOT NULL UNIQUE,
    hmac_token TEXT NOT NULL,
    hmac_mandatory BOOLEAN NOT NULL DEFAULT FALSE,
    end_conversation BOOLEAN NOT NULL DEFAULT FALSE,
    welcome_title TEXT NOT NULL DEFAULT '',
    welcome_tagline TEXT NOT NULL DEFAULT '',
    widget_color TEXT NOT NULL DEFAULT '#1f93ff',
    elevenlabs_agent_id TEXT,
    elevenlabs_api_key TEXT,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS inboxes_account ON inboxes (account_id);

CREATE TABLE IF NOT EXISTS inbox_members (
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    PRIMARY KEY (inbox_id, user_id)
);

CREATE TABLE IF NOT EXISTS contacts (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL DEFAULT '',
    email TEXT,
    phone_number TEXT,
    identifier TEXT,
    -- TRUE once a valid identifier_hash proved the identifier (server/widget/identity.py).
    identifier_verified BOOLEAN NOT NULL DEFAULT FALSE,
    avatar_url TEXT NOT NULL DEFAULT '',
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    additional_attributes TEXT NOT NULL DEFAULT '{}',
    custom_attributes TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS contacts_account_identifier ON contacts (account_id, identifier);

-- One verified contact per identifier and account: two visitors proving the same identifier at
-- once cannot make two (the second write fails and retries onto the first).
CREATE UNIQUE INDEX IF NOT EXISTS contacts_verified_identifier ON contacts (account_id, identifier)
    WHERE identifier_verified;

CREATE TABLE IF NOT EXISTS contact_inboxes (
    id BIGSERIAL PRIMARY KEY,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    source_id TEXT NOT NULL,
    pubsub_token TEXT NOT NULL UNIQUE,
    hmac_verified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (inbox_id, source_id)
);

CREATE INDEX IF NOT EXISTS contact_inboxes_contact ON contact_inboxes (contact_id);

CREATE TABLE IF NOT EXISTS conversations (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    display_id BIGINT NOT NULL,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    contact_inbox_id BIGINT NOT NULL REFERENCES contact_inboxes (id),
    status TEXT NOT NULL DEFAULT 'open',
    assignee_id BIGINT REFERENCES users (id),
    additional_attributes TEXT NOT NULL DEFAULT '{}',
    custom_attributes TEXT NOT NULL DEFAULT '{}',
    contact_last_seen_at DOUBLE PRECISION,
    agent_last_seen_at DOUBLE PRECISION,
    unread_count INTEGER NOT NULL DEFAULT 0,
    last_activity_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (account_id, display_id)
);

CREATE INDEX IF NOT EXISTS conversations_contact_inbox ON conversations (contact_inbox_id, id);

CREATE INDEX IF NOT EXISTS conversations_inbox_activity
    ON conversations (inbox_id, last_activity_at);

CREATE TABLE IF NOT EXISTS messages (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    message_type INTEGER NOT NULL,
    content_type TEXT NOT NULL DEFAULT 'text',
    content TEXT,
    private BOOLEAN NOT NULL DEFAULT FALSE,
    status TEXT NOT NULL DEFAULT 'sent',
    sender_type TEXT,
    sender_id BIGINT,
    source_id TEXT,
    echo_id TEXT,
    external_event_id TEXT,
    content_attributes TEXT NOT NULL DEFAULT '{}',
    additional_attributes TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (conversation_id, external_event_id)
);

CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation_id, id);

-- A retried message (the same echo_id from the same sender) is written once: the database
-- refuses the second, even when both arrive at once (server/store/messages.py).
CREATE UNIQUE INDEX IF NOT EXISTS messages_sender_echo ON messages (sender_type, sender_id, echo_id)
    WHERE echo_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS outbox (
    id BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT,
    channels TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    published_at DOUBLE PRECISION
);

CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_at);
"""

IDENTIFIER_VERIFIED_BACKFILL = """
    UPDATE contacts SET identifier_verified = TRUE
    WHERE id IN (
        SELECT MIN(c.id) FROM contacts c
        WHERE c.identifier IS NOT NULL
          AND EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.contact_id = c.id)
          AND NOT EXISTS (
              SELECT 1 FROM contact_inboxes ci
              WHERE ci.contact_id = c.id AND NOT ci.hmac_verified)
        GROUP BY c.account_id, c.identifier)
"""

ECHO_RETRIES_CLEANUP = """
    UPDATE messages SET echo_id = NULL
    WHERE echo_id IS NOT NULL AND id NOT IN (
        SELECT MIN(id) FROM messages WHERE echo_id IS NOT NULL
        GROUP BY sender_type, sender_id, echo_id)
"""


def statements(dialect: str) -> list[str]:
    sql = "\n".join(line for line in DDL.splitlines() if not line.lstrip().startswith("--"))
    if dialect == "sqlite":
        # The rowid (any INTEGER PRIMARY KEY is); NOT NULL as on PostgreSQL, which is what
        # it is anyway and what reflection then says.
        sql = sql.replace("BIGSERIAL PRIMARY KEY", "INTEGER NOT NULL PRIMARY KEY")
    return [stmt.strip() for stmt in re.split(r";\s*(?:\n|$)", sql) if stmt.strip()]


def upgrade() -> None:
    conn = op.get_bind()
    ddl = statements(conn.dialect.name)
    for stmt in ddl:
        if stmt.upper().startswith("CREATE TABLE"):
            op.execute(stmt)
    inspector = sa.inspect(conn)
    if "identifier_verified" not in {c["name"] for c in inspector.get_columns("contacts")}:
        op.execute(
            "ALTER TABLE contacts ADD COLUMN identifier_verified BOOLEAN NOT NULL DEFAULT FALSE"
        )
        op.execute(IDENTIFIER_VERIFIED_BACKFILL)
    if "messages_sender_echo" not in {ix["name"] for ix in inspector.get_indexes("messages")}:
        op.execute(ECHO_RETRIES_CLEANUP)
    for stmt in ddl:
        if not stmt.upper().startswith("CREATE TABLE"):
            op.execute(stmt)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the database instead")
