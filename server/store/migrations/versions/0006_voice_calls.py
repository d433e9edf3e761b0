"""Voice calls as data (issue 18): a voice_calls row per call of a visitor (its ElevenLabs
conversation, start, last heartbeat, end and why), and the inbox's ElevenLabs webhook secret.

Only additions: a new table and a nullable column, so the version still running is not
disturbed.

Revision ID: 0006_voice_calls
Revises: 0005_widget_events
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0006_voice_calls"
down_revision = "0005_widget_events"
branch_labels = None
depends_on = None

# schema.sql's spelling (DOUBLE PRECISION, BIGSERIAL), as the baseline writes its tables.
TABLE = """
CREATE TABLE voice_calls (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    contact_inbox_id BIGINT NOT NULL REFERENCES contact_inboxes (id),
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    elevenlabs_conversation_id TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    last_heartbeat_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    end_reason TEXT,
    end_signal BOOLEAN NOT NULL DEFAULT FALSE,
    reconciled_at DOUBLE PRECISION
)
"""

INDEXES = (
    "CREATE INDEX voice_calls_contact_inbox ON voice_calls (contact_inbox_id, id)",
    "CREATE INDEX voice_calls_conversation ON voice_calls (conversation_id, id)",
    "CREATE UNIQUE INDEX voice_calls_live ON voice_calls (contact_inbox_id) WHERE ended_at IS NULL",
    "CREATE INDEX voice_calls_heartbeat ON voice_calls (last_heartbeat_at) WHERE ended_at IS NULL",
    "CREATE UNIQUE INDEX voice_calls_elevenlabs ON voice_calls (elevenlabs_conversation_id)"
    " WHERE elevenlabs_conversation_id IS NOT NULL",
)


def upgrade() -> None:
    table = TABLE
    if op.get_bind().dialect.name == "sqlite":
        table = table.replace("BIGSERIAL PRIMARY KEY", "INTEGER NOT NULL PRIMARY KEY")
    op.execute(table)
    for statement in INDEXES:
        op.execute(statement)
    op.execute("ALTER TABLE inboxes ADD COLUMN elevenlabs_webhook_secret TEXT")


def downgrade() -> None:
    op.execute("ALTER TABLE inboxes DROP COLUMN elevenlabs_webhook_secret")
    op.execute("DROP TABLE voice_calls")
