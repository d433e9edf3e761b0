"""What the relay has published: one `Position` in relay_state, never a write to the outbox
rows (server/store/outbox.py says why), and the reads and the pruning that go by it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Text,
    all_,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.prepared import Prepared
from server.store.tables import outbox, relay_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Position:
    """How far the relay has published, as a PostgreSQL snapshot (`pg_snapshot`, whose text
    form `xmin:xmax:xip,...` it shares): a row is covered (published) when the transaction that
    wrote it (`outbox.xid`) is below `xmax` and not listed in `xip`. Every transaction a
    snapshot sees has committed; one it does not see may commit later, with rows whose ids
    are below those already published (ids are drawn before commit, so they commit out of
    order across conversations): that is why a bare id watermark would lose events.

    On SQLite one writer commits at a time and ids follow commit order: a row's "transaction"
    is its id, and a position is `(n, n, ())` (rows below id n are published)."""

    xmin: int
    xmax: int
    xip: frozenset[int] = frozenset()

    def covers(self, xid: int) -> bool:
        return xid < self.xmax and xid not in self.xip

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in sorted(self.xip))}"

    @classmethod
    def parse(cls, value: str) -> Position:
        try:
            xmin_text, xmax_text, xip_text = value.split(":")
            xmin, xmax = int(xmin_text), int(xmax_text)
            xip = frozenset(int(x) for x in xip_text.split(",") if x)
        except ValueError:
            raise ValueError(f"not a relay position (xmin:xmax:xip,...): {value[:100]!r}") from None
        if not 0 <= xmin <= xmax or any(not xmin <= x < xmax for x in xip):
            raise ValueError(f"not a relay position (xmin <= xip < xmax): {value[:100]!r}")
        return cls(xmin, xmax, xip)

    @classmethod
    def past(cls, row_id: int) -> Position:
        """SQLite: every row up to `row_id` published."""
        return cls(row_id + 1, row_id + 1)


# Nothing published yet: covers only the rows an upgraded database had published
# (migration 0002 gives them xid 0).
INITIAL = Position(1, 1)
# relay_state's row for the outbox relay.
RELAY = "outbox"
# (xid, id) pairs read per statement when looking through the rows a position does not cover.
KEY_PAGE = 10_000
# Transactions a position may list as in flight (PostgreSQL lists its running transactions,
# up to max_connections; the relay adds those whose events it has not published yet). Past
# this the relay keeps its last position until the events catch up.
PENDING_LIMIT = 1_000
_LAST = 2**63 - 1

_SAVE_POSITION = Prepared(
    update(relay_state)
    .where(relay_state.c.name == bindparam("name"))
    .values(position=bindparam("position"), updated_at=bindparam("now"))
)
_XIP = bindparam("xip", type_=ARRAY(BigInteger))
_has_xid = outbox.c.xid.is_not(None)
_KEY = (outbox.c.id, outbox.c.xid, outbox.c.created_at)
_KEYS_AFTER = Prepared(
    select(*_KEY)
    .where(
        _has_xid,
        tuple_(outbox.c.xid, outbox.c.id)
        > tuple_(bindparam("x", type_=BigInteger), bindparam("i", type_=BigInteger)),
    )
    .order_by(outbox.c.xid, outbox.c.id)
    .limit(bindparam("limit"))
)
_KEYS_IN = Prepared(select(*_KEY).where(_has_xid, outbox.c.xid == any_(_XIP)))


def _part(n: int) -> Any:
    """Which part of _RECORDING_READ a row comes from."""
    return literal_column(str(n)).label("part")


# A recording's one read: the current snapshot (part 0), and in that same snapshot the first
# page of rows from the last position's xmax on (part 1) and the rows of its in-flight
# transactions (part 2).
_no_snapshot = cast(null(), Text).label("snapshot")
_RECORDING_READ = Prepared(
    union_all(
        select(
            _part(0),
            cast(null(), BigInteger).label("id"),
            cast(null(), BigInteger).label("xid"),
            literal_column("pg_current_snapshot()::text").label("snapshot"),
        ),
        select(_part(1), outbox.c.id, outbox.c.xid, _no_snapshot)
        .where(
            _has_xid,
            tuple_(outbox.c.xid, outbox.c.id)
            > tuple_(bindparam("x", type_=BigInteger), bindparam("i", type_=BigInteger)),
        )
        .order_by(outbox.c.xid, outbox.c.id)
        .limit(bindparam("limit")),
        select(_part(2), outbox.c.id, outbox.c.xid, _no_snapshot).where(
            _has_xid, outbox.c.xid == any_(_XIP)
        ),
    )
)
_ROW = (outbox.c.id, outbox.c.conversation_id, outbox.c.channels, outbox.c.payload)
_UNCOVERED_PG = Prepared(
    select(*_ROW, outbox.c.created_at, outbox.c.xid)
    .where(
        outbox.c.id > bindparam("after"),
        _has_xid,
        or_(outbox.c.xid >= bindparam("xmax"), outbox.c.xid == any_(_XIP)),
    )
    .order_by(outbox.c.id)
    .limit(bindparam("limit"))
)
_UNCOVERED_SQLITE = Prepared(
    select(*_ROW, outbox.c.created_at)
    .where(outbox.c.id > bindparam("after"), outbox.c.id >= bindparam("xmax"))
    .order_by(outbox.c.id)
    .limit(bindparam("limit"))
)


def _is_pg(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


_LOAD_POSITION = select(
    select(relay_state.c.position).where(relay_state.c.name == RELAY).scalar_subquery()
)
_LOAD_POSITION_PG = select(
    select(relay_state.c.position).where(relay_state.c.name == RELAY).scalar_subquery(),
    literal_column("pg_current_snapshot()::text"),
)


async def _stored_position(conn: AsyncConnection) -> tuple[Position, Position | None]:
    """(the position recorded last, or INITIAL; PostgreSQL: the current snapshot)."""
    if not _is_pg(conn):
        stored = (await conn.execute(_LOAD_POSITION)).scalar()
        return (INITIAL if stored is None else _parse_stored(stored)), None
    stored, snapshot = (await conn.execute(_LOAD_POSITION_PG)).one()
    return (INITIAL if stored is None else _parse_stored(stored)), Position.parse(snapshot)


def _parse_stored(value: str) -> Position:
    try:
        return Position.parse(value)
    except ValueError as exc:
        raise ValueError(
            f"relay_state {RELAY!r}: {exc}; delete that row and the relay publishes again "
            "every event the outbox holds"
        ) from None


def _foreign(position: Position, snapshot: Position | None) -> bool:
    """PostgreSQL: a position past the database's own transaction ids comes from another
    cluster (the database was restored from a dump: the rows keep their xid values, the
    cluster does not): new transactions there would look published already."""
    return snapshot is not None and position.xmax > snapshot.xmax


async def load_position(conn: AsyncConnection) -> Position:
    """The position the relay recorded last (INITIAL before it ever did). One from another
    cluster (see `_foreign`) counts as INITIAL until the relay rebases (`resume_position`):
    pruning then keeps every row, and the backlog counts every row."""
    position, snapshot = await _stored_position(conn)
    return INITIAL if _foreign(position, snapshot) else position


async def resume_position(conn: AsyncConnection) -> Position:
    """The position a relay starts from (after it takes the lease): `load_position`, and
    when the recorded one comes from another cluster, the outbox rebased: every row owed
    again (xid 1) and the position INITIAL, so that nothing is taken for published wrongly;
    the relay then publishes what the outbox holds once more (at least once)."""
    position, snapshot = await _stored_position(conn)
    if not _foreign(position, snapshot):
        return position
    assert snapshot is not None
    result = await conn.execute(update(outbox).where(outbox.c.xid > 1).values(xid=1))
    log.error(
        "relay_state %r records a position past this database's transaction ids (%s > %s): "
        "the database was restored from a dump or moved to another cluster. The relay "
        "publishes again the %d events the outbox holds (clients may see recent events twice)",
        RELAY,
        position.xmax,
        snapshot.xmax,
        result.rowcount,
    )
    await save_position(conn, INITIAL)
    return INITIAL


async def save_position(conn: AsyncConnection, position: Position) -> None:
    """Record `position`: one small row, rewritten in place."""
    params = {"name": RELAY, "position": str(position), "now": time.time()}
    if await _SAVE_POSITION.run(conn, params) == 0:
        await conn.execute(
            insert(relay_state).values(name=RELAY, position=str(position), updated_at=params["now"])
        )


async def _key_pages(conn: AsyncConnection, position: Position) -> AsyncIterator[list[Any]]:
    """PostgreSQL: (id, xid, created_at) of the rows `position` does not cover, a page at a
    time through outbox_xid: those of its in-flight transactions, then those from its xmax on
    in (xid, id) order. Paging with LIMIT keeps every plan on the index, whatever the planner
    estimates (a table autovacuum never analyzed has no statistics at all)."""
    if position.xip:
        yield await _KEYS_IN.all(conn, {"xip": sorted(position.xip)})
    x, i = position.xmax - 1, _LAST
    while True:
        rows = await _KEYS_AFTER.all(conn, {"x": x, "i": i, "limit": KEY_PAGE})
        yield rows
        if len(rows) < KEY_PAGE:
            return
        x, i = rows[-1]["xid"], rows[-1]["id"]


async def lowest_uncovered(conn: AsyncConnection, position: Position) -> int | None:
    """The lowest id of a row `position` does not cover (None: none), where a reader that
    goes in id order starts (see `uncovered`)."""
    if not _is_pg(conn):
        result = await conn.execute(
            select(func.min(outbox.c.id)).where(outbox.c.id >= position.xmax)
        )
        return result.scalar()
    lowest: int | None = None
    async for rows in _key_pages(conn, position):
        for row in rows:
            if lowest is None or row["id"] < lowest:
                lowest = row["id"]
    return lowest


async def uncovered(
    conn: AsyncConnection, position: Position, after: int, limit: int
) -> list[dict[str, Any]]:
    """At most `limit` rows `position` does not cover, with ids above `after`, in id order
    (with `created_at`, and on PostgreSQL `xid`). Per conversation, id order is commit order:
    every writer of a conversation's events holds that conversation's row lock."""
    if _is_pg(conn):
        params = {"after": after, "xmax": position.xmax, "xip": sorted(position.xip)}
        return await _UNCOVERED_PG.all(conn, {**params, "limit": limit})
    return await _UNCOVERED_SQLITE.all(
        conn, {"after": after, "xmax": position.xmax, "limit": limit}
    )


async def unpublished(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """Rows the recorded position does not cover (not yet published), oldest first."""
    position = await load_position(conn)
    lowest = await lowest_uncovered(conn, position)
    if lowest is None:
        return []
    return await uncovered(conn, position, lowest - 1, limit)


async def mark_and_fetch(
    conn: AsyncConnection, position: Position, limit: int
) -> list[dict[str, Any]]:
    """SQLite: record the position past the batch just published and read the next batch,
    in one transaction: the relay then needs one transaction per batch instead of two."""
    await save_position(conn, position)
    return await uncovered(conn, position, position.xmax - 1, limit)


async def advance(
    conn: AsyncConnection, old: Position, published: Collection[int]
) -> tuple[Position, set[int]]:
    """PostgreSQL: record how far the relay has published, moving on from `old` (what it
    recorded last) now that it has published the events `published` (ids) as well. Returns
    the position recorded and the ids of `published` it covers.

    The new position is the database's current snapshot (every transaction it sees has
    committed, and the same statement reads their rows), with the transactions whose rows
    were not published yet added to its in-flight list: their notifications are on the way
    (or were lost; the relay's sweep publishes those). Reads only the rows `old` does not
    cover (one statement, more only through a backlog); one UPDATE of relay_state's row,
    whatever the number of events."""
    params = {"x": old.xmax - 1, "i": _LAST, "limit": KEY_PAGE, "xip": sorted(old.xip)}
    rows = await _RECORDING_READ.all(conn, params)
    snapshot = Position.parse(next(row["snapshot"] for row in rows if row["part"] == 0))
    keys = {row["id"]: row["xid"] for row in rows if row["part"] != 0}
    page = [(row["xid"], row["id"]) for row in rows if row["part"] == 1]
    cut: int | None = None
    while len(page) == KEY_PAGE:  # a backlog: more rows past the position than one page
        x, i = max(page)
        if x > old.xmax:
            cut = x  # stop before transaction x (its rows may go on); the next round goes on
            break
        more = await _KEYS_AFTER.all(conn, {"x": x, "i": i, "limit": KEY_PAGE})
        keys.update((row["id"], row["xid"]) for row in more)
        page = [(row["xid"], row["id"]) for row in more]
    xmax = snapshot.xmax if cut is None else min(snapshot.xmax, cut)
    truncated = cut is not None
    pending = {
        xid for row_id, xid in keys.items() if snapshot.covers(xid) and row_id not in published
    }
    xip = frozenset(x for x in snapshot.xip | pending if x < xmax)
    if len(xip) > PENDING_LIMIT:
        return old, set()
    new = Position(min(snapshot.xmin, xmax, *xip), xmax, xip)
    await save_position(conn, new)
    covered = {
        row_id
        for row_id in published
        if (new.covers(keys[row_id]) if row_id in keys else not truncated)
    }
    return new, covered


async def backlog(conn: AsyncConnection) -> tuple[int, float | None]:
    """(rows not yet published, the oldest one's created_at): the relay's lag, for /metrics.
    Reads the rows the recorded position does not cover, and only those."""
    position = await load_position(conn)
    if not _is_pg(conn):
        result = await conn.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.id >= position.xmax)
        )
        count, oldest = result.one()
        return int(count), oldest
    count, oldest = 0, None
    async for rows in _key_pages(conn, position):
        count += len(rows)
        for row in rows:
            if oldest is None or row["created_at"] < oldest:
                oldest = row["created_at"]
    return count, oldest


async def prune(conn: AsyncConnection, created_before: float, limit: int) -> int:
    """Delete at most `limit` published events created before `created_before`, oldest
    first; returns how many. The rows are found through the created_at index, so a call reads
    about `limit` rows however big the table is, and holds the writer only that long.
    Rows the relay's recorded position does not cover stay whatever their age: it still owes
    them. So does the newest row: SQLite gives a new row the id after the largest one left,
    and ids must never come back (the relay's position on SQLite and the hub's duplicate
    check both go by them)."""
    position = await load_position(conn)
    if _is_pg(conn):
        covered = and_(outbox.c.xid < position.xmax, outbox.c.xid != all_(_XIP))
        params: dict[str, Any] = {"xip": sorted(position.xip)}
    else:
        covered = outbox.c.id < position.xmax
        params = {}
    newest = select(func.max(outbox.c.id)).scalar_subquery()
    oldest = (
        select(outbox.c.id)
        .where(outbox.c.created_at < created_before, covered, outbox.c.id < newest)
        .order_by(outbox.c.created_at)
        .limit(limit)
    )
    result = await conn.execute(
        delete(outbox).where(outbox.c.id.in_(oldest.scalar_subquery())), params
    )
    return result.rowcount or 0
