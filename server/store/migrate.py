"""Schema migrations (Alembic): which revision a database is at, and bringing it to the one
this code needs.

The revisions live in server/store/migrations/versions/ (shipped in the package); Alembic
keeps the database's revision in its `alembic_version` table. A database that has our
tables but no `alembic_version` was made before migrations, by schema.sql applied at
start: the baseline revision completes such a database (idempotently) and stamps it, so
upgrading it is the same command as upgrading any other.

Who migrates: `python -m server migrate` always; a process at start only when
AUTO_MIGRATE is on (the default on SQLite, the embedded database one process owns). Any
other process that finds the database behind the code (or ahead of it) refuses to start
with one line saying what to run (`SchemaNotCurrent`). Concurrent upgrades serialize: on
PostgreSQL by an advisory lock held for the upgrade's transaction, on SQLite by its write
lock (the writer's BEGIN IMMEDIATE).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Float, TypeDecorator, inspect
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().with_name("migrations")

# The lock the schema.sql loader of earlier versions took, so that one of them starting
# while this version migrates waits for it (any constant works; every process must agree).
PG_MIGRATION_LOCK = 0x636861745F736368

# A table every version ever made: its presence without `alembic_version` means a database
# made before migrations.
_FIRST_TABLE = "accounts"


class SchemaNotCurrent(Exception):
    """The database's schema is not the revision this code needs. The message is one line
    saying which, and what to run."""


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: its revisions (none before the first migration), the one
    the code needs, whether it has our tables at all, and whether the code knows every
    revision it is at (a newer version may have migrated it further)."""

    current: tuple[str, ...]
    head: str
    has_tables: bool
    known: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == (self.head,)

    def problem(self, where: str) -> str | None:
        """None when the code can run on it; else the one line that says what to do."""
        if self.up_to_date:
            return None
        run = "run `python -m server migrate` (with the same DATABASE_URL), then start again"
        if not self.current and not self.has_tables:
            return f"the database at {where} has no schema yet: {run}"
        if not self.current:
            return (
                f"the database at {where} was made before schema migrations (it has no "
                f"alembic_version table): {run}; it is brought to revision {self.head} "
                "with its data"
            )
        at = ", ".join(self.current)
        if not self.known:
            return (
                f"the database at {where} is at schema revision {at}, which this version "
                f"does not know (it needs {self.head}): a newer version migrated it; run "
                "that version"
            )
        return (
            f"the database at {where} is at schema revision {at}, this version needs "
            f"{self.head}: {run}"
        )


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate writes a column of one of our own types (JSONText) as the SQL type it
    stores, so that a revision never imports application code that may change after it."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{type(obj.impl_instance).__name__}()"
    return False


def compare_type(
    context: Any, inspected: Any, column: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """SQLite reflects DOUBLE PRECISION as REAL (its affinity), the one type our metadata
    and a real database name differently without differing; anything else: Alembic's
    comparison."""
    if context.dialect.name == "sqlite":
        impl = getattr(metadata_type, "impl_instance", metadata_type)
        if isinstance(impl, Float) and isinstance(inspected_type, Float):
            return False
    return None


def compare_server_default(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_default: Any,
    metadata_default: Any,
    rendered_metadata_default: Any,
) -> bool | None:
    """outbox.xid's default is PostgreSQL's transaction id: SQLite has none (the column
    stays NULL there, revision 0002), so there the column has no default to compare."""
    if (
        context.dialect.name == "sqlite"
        and metadata_column.table.name == "outbox"
        and metadata_column.name == "xid"
    ):
        return inspected_default is not None
    return None


# What env.py passes to Alembic, and tests/test_migrations.py to compare_metadata.
CONTEXT_OPTIONS: dict[str, Any] = {
    "render_as_batch": True,
    "compare_type": compare_type,
    "compare_server_default": compare_server_default,
    "render_item": render_item,
}


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The revision this code needs (a single head: revisions form one line)."""
    found = scripts().get_current_head()
    assert found is not None, f"no revisions under {MIGRATIONS}"
    return found


def _known(rev: str) -> bool:
    try:
        return scripts().get_revision(rev) is not None
    except Exception:  # alembic's ResolutionError: not a revision of ours
        return False


def _state(sync_conn: Any) -> SchemaState:
    current = tuple(sorted(MigrationContext.configure(sync_conn).get_current_heads()))
    known = all(_known(rev) for rev in current)
    has_tables = inspect(sync_conn).has_table(_FIRST_TABLE)
    return SchemaState(current=current, head=head(), has_tables=has_tables, known=known)


async def state(conn: AsyncConnection) -> SchemaState:
    """Where the database of `conn` stands (reads only)."""
    return await conn.run_sync(_state)


def _upgrade(sync_conn: Any, target: str) -> None:
    cfg = config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, target)


async def upgrade(conn: AsyncConnection, where: str, target: str = "heads") -> SchemaState:
    """Bring the database to `target` (the code's revision by default), inside the
    transaction `conn` has begun: it all commits, or none of it. Returns the state before.
    Raises SchemaNotCurrent for a database at a revision this code does not know."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
    before = await state(conn)
    if not before.known:
        raise SchemaNotCurrent(before.problem(where))
    if before.up_to_date and target == "heads":
        return before
    origin = ", ".join(before.current) or ("before migrations" if before.has_tables else "empty")
    log.info(
        "migrating the database at %s from %s to %s",
        where,
        origin,
        before.head if target == "heads" else target,
    )
    await conn.run_sync(_upgrade, target)
    after = await state(conn)
    log.info("database at %s migrated from %s to %s", where, origin, ", ".join(after.current))
    return before


async def check(conn: AsyncConnection, where: str) -> SchemaState:
    """Raise SchemaNotCurrent unless the database is at the code's revision."""
    found = await state(conn)
    problem = found.problem(where)
    if problem is not None:
        raise SchemaNotCurrent(problem)
    return found
