"""`python -m server new-migration -m "..."`: the next schema revision, written by Alembic's
autogenerate from the difference between server/store/tables.py and the schema the
existing revisions make. That schema is built in a throwaway SQLite file, so no database
is needed. The file is a draft: read it, fix what autogenerate cannot know (a backfill, a
rename it took for a drop and an add), and update schema.sql to match (docs/migrations.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from server.store import migrate


def next_revision_id() -> str:
    """Revisions are numbered 0001, 0002, ...: the order is plain in the file names."""
    ids = [rev.revision for rev in migrate.scripts().walk_revisions()]
    # An id may carry a name after its number ("0006_voice_calls").
    numbers = [int(rev.split("_")[0]) for rev in ids if rev.split("_")[0].isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def write_revision(message: str) -> str:
    """Write the revision file; returns its path."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'head.db'}")
        try:
            with engine.begin() as conn:
                cfg = migrate.config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "heads")
            with engine.begin() as conn:
                cfg = migrate.config()
                cfg.attributes["connection"] = conn
                script = command.revision(
                    cfg, message=message, autogenerate=True, rev_id=next_revision_id()
                )
        finally:
            engine.dispose()
    migrate.scripts.cache_clear()
    assert script is not None and not isinstance(script, list)
    return str(script.path)
