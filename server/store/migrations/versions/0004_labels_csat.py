"""Labels and CSAT (issue 17 items 2 and 3).

- `labels`: an account's labels (Chatwoot's Label: a title unique per account, lower case,
  letters, digits, `-` and `_`; a description, a colour, show_on_sidebar).
- `conversations.labels`: the titles on a conversation, as a JSON array (a handful per
  conversation, read with the row every payload is built from: no join per payload).
- `inboxes.csat_survey_enabled`: resolving a conversation of the inbox sends the survey.
- `csat_survey_responses`: one row per answered survey message (its rating and comment are
  also on the message, in Chatwoot's shape), for the agents' list.

Existing rows get the defaults: no labels, CSAT off.

Revision ID: 0004_labels_csat
Revises: 0003_attachments
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0004_labels_csat"
down_revision = "0003_attachments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    serial = (
        "BIGSERIAL PRIMARY KEY"
        if op.get_bind().dialect.name == "postgresql"
        else "INTEGER NOT NULL PRIMARY KEY"
    )
    op.execute("ALTER TABLE inboxes ADD COLUMN csat_survey_enabled BOOLEAN NOT NULL DEFAULT FALSE")
    op.execute("ALTER TABLE conversations ADD COLUMN labels TEXT NOT NULL DEFAULT '[]'")
    op.execute(
        f"""
        CREATE TABLE labels (
            id {serial},
            account_id BIGINT NOT NULL REFERENCES accounts (id),
            title TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            color TEXT NOT NULL DEFAULT '#1f93ff',
            show_on_sidebar BOOLEAN NOT NULL DEFAULT TRUE,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            UNIQUE (account_id, title)
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE csat_survey_responses (
            id {serial},
            account_id BIGINT NOT NULL REFERENCES accounts (id),
            inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
            conversation_id BIGINT NOT NULL REFERENCES conversations (id),
            message_id BIGINT NOT NULL UNIQUE REFERENCES messages (id),
            contact_id BIGINT NOT NULL REFERENCES contacts (id),
            assigned_agent_id BIGINT REFERENCES users (id),
            rating INTEGER NOT NULL,
            feedback_message TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX csat_survey_responses_account ON csat_survey_responses (account_id, id)"
    )


def downgrade() -> None:
    raise NotImplementedError("restore a backup taken before the upgrade instead")
