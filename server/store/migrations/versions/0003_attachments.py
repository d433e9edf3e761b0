"""Attachments (issue 17 item 1): the files of a message, and whether an inbox takes them.

`attachments` holds one row per file of a message: what Chatwoot's attachment JSON shows
(file_type, size, width and height of an image) and where the file is kept (its storage key,
and its thumbnail's for an image; server/storage/). `inboxes.attachments_enabled` is the
widget feature flag `attachments` (on by default, as in Chatwoot; `create-inbox
--no-attachments` turns it off).

Revision ID: 0003_attachments
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0003_attachments"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    serial = "BIGSERIAL PRIMARY KEY" if dialect == "postgresql" else "INTEGER NOT NULL PRIMARY KEY"
    op.execute("ALTER TABLE inboxes ADD COLUMN attachments_enabled BOOLEAN NOT NULL DEFAULT TRUE")
    op.execute(
        f"""
        CREATE TABLE attachments (
            id {serial},
            account_id BIGINT NOT NULL REFERENCES accounts (id),
            message_id BIGINT NOT NULL REFERENCES messages (id),
            file_type TEXT NOT NULL,
            content_type TEXT NOT NULL,
            file_name TEXT NOT NULL,
            byte_size BIGINT NOT NULL,
            storage_key TEXT NOT NULL UNIQUE,
            thumb_key TEXT,
            width INTEGER,
            height INTEGER,
            created_at DOUBLE PRECISION NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX attachments_message ON attachments (message_id)")


def downgrade() -> None:
    op.execute("DROP TABLE attachments")
    op.execute("ALTER TABLE inboxes DROP COLUMN attachments_enabled")
