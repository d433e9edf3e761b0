"""The database engine's own ways, chosen once from the Database's dialect (`engine_for`).

SQLite and PostgreSQL write the same rows and events with different statements: SQLite runs
every write inside a group commit on the loop's thread (a statement costs microseconds, the
batch holds the only write lock), PostgreSQL pays a network round trip per statement and runs
writes concurrently. Each engine spells its paths straight through in its own module:

- `visitor_message`: the busiest write, whole (PostgreSQL: an unlocked two-statement try,
  then a transaction; SQLite: one op of the group commit);
- `write_message`: a message in the caller's transaction (bump, flood check, reopen, the row
  and its event);
- how the relay learns of a commit (`relay_listens`, `wake_relay_after_commits`);
- `serialize_seeding`: two processes seeding an empty database at once make one demo.

Nothing outside server/store/ asks which engine runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from server.store.db import Database
    from server.store.inputs import SentMessage, VisitorMessage
    from server.store.message_writes import Writing


class Engine(Protocol):
    name: str
    # True: each outbox insert NOTIFYs and the relay LISTENs (workers/listener.py); False:
    # the relay runs in this process and is woken after each commit with outbox rows.
    relay_listens: bool

    async def visitor_message(self, db: Database, m: VisitorMessage) -> SentMessage | None:
        """Write a visitor's message; None when no such visitor."""

    async def write_message(
        self, conn: AsyncConnection, conversation_id: int, w: Writing
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(message, conversation) of a message written in the caller's transaction."""

    def wake_relay_after_commits(self, db: Database, wake: Callable[[], None]) -> None:
        """Have `wake` called after each commit that wrote to the outbox, where needed."""

    async def serialize_seeding(self, conn: AsyncConnection) -> None:
        """Hold, until commit, the lock that makes seeding the demo data one at a time."""


def engine_for(db: Database) -> Engine:
    """The engine of `db`'s dialect (stateless: one per dialect)."""
    from server.store.engine import postgresql, sqlite

    return postgresql.ENGINE if db.is_postgresql else sqlite.ENGINE
