"""widget_events: what the widget reports about a visitor (POST /api/v1/widget/events),
kept per contact_inbox for agents to read (issue 17 item 6). A new table: nothing to
backfill, and the version still running never sees it.

Revision ID: 0005_widget_events
Revises: 0004_labels_csat
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0005_widget_events"
down_revision = "0004_labels_csat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    key = "INTEGER NOT NULL PRIMARY KEY" if sqlite else "BIGSERIAL PRIMARY KEY"
    op.execute(
        f"""
        CREATE TABLE widget_events (
            id {key},
            account_id BIGINT NOT NULL REFERENCES accounts (id),
            inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
            contact_id BIGINT NOT NULL REFERENCES contacts (id),
            contact_inbox_id BIGINT NOT NULL REFERENCES contact_inboxes (id),
            name TEXT NOT NULL,
            event_info TEXT NOT NULL DEFAULT '{{}}',
            created_at DOUBLE PRECISION NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX widget_events_contact_inbox ON widget_events (contact_inbox_id, id)")
    op.execute("CREATE INDEX widget_events_contact ON widget_events (contact_id, id)")


def downgrade() -> None:
    op.execute("DROP TABLE widget_events")
