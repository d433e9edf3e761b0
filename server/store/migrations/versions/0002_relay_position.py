"""The relay records a position instead of marking every outbox row (issue 14 item 6).

Before, the relay set `outbox.published_at` on each row it published: an UPDATE per event
that could never be HOT (the column was in the partial index `outbox_unpublished`), the
outbox's main cause of bloat. Now the relay keeps one row in `relay_state` saying how far it
has published (server/store/outbox.py, Position): on PostgreSQL a snapshot of transaction ids,
for which each outbox row carries the id of the transaction that wrote it (`outbox.xid`); on
SQLite the first row id not published yet (ids follow commit order there).

Existing rows: on PostgreSQL published ones get xid 0, which every position covers, and the
others 1, which the first position (INITIAL) leaves to publish; the default comes after the
backfill, so adding the column does not rewrite the table at once. On SQLite the position is
the first row not marked published (or the one after the last). Then the mark goes: the
index, and the column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PG_XID_DEFAULT = "pg_current_xact_id()::text::bigint"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(
        """
        CREATE TABLE relay_state (
            name TEXT NOT NULL PRIMARY KEY,
            position TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )
        """
    )
    op.execute("ALTER TABLE outbox ADD COLUMN xid BIGINT")
    if dialect == "postgresql":
        op.execute("UPDATE outbox SET xid = CASE WHEN published_at IS NULL THEN 1 ELSE 0 END")
        op.execute(f"ALTER TABLE outbox ALTER COLUMN xid SET DEFAULT ({PG_XID_DEFAULT})")
    else:
        op.execute(
            """
            INSERT INTO relay_state (name, position, updated_at)
            SELECT 'outbox', n || ':' || n || ':', 0 FROM (
                SELECT COALESCE(
                    (SELECT MIN(id) FROM outbox WHERE published_at IS NULL),
                    (SELECT MAX(id) + 1 FROM outbox),
                    1) AS n)
            """
        )
    op.execute("DROP INDEX IF EXISTS outbox_unpublished")
    op.execute("ALTER TABLE outbox DROP COLUMN published_at")
    op.execute("CREATE INDEX outbox_xid ON outbox (xid, id) WHERE xid IS NOT NULL")


def downgrade() -> None:
    raise NotImplementedError("restore a backup taken before the upgrade instead")
