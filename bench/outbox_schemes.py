"""Benchmark: what each way of recording "published" costs the outbox on disk (issue 14 item 6).

SQL only, on a PostgreSQL cluster of its own (as bench/outbox_growth.py starts it: initdb in
a temp dir, fsync=off, autovacuum off so that nothing is cleaned up behind the measurement).
For each scheme it creates the outbox table as that scheme needs it, then writes --rows
events the way the server does (one transaction per event, a ~--payload bytes payload) and
records them published the way the relay would (every --batch events, as the relay does every
0.1 s at 100 msg/s), and reports the size of everything the scheme keeps
(`pg_total_relation_size` of its tables) and the WAL it wrote. Schemes:

- `mark`: the code before the change: `UPDATE outbox SET published_at` on every row, with
  the partial index `outbox_unpublished (id) WHERE published_at IS NULL` (never a HOT update).
- `hot`: the same update without that index and with `fillfactor` --fillfactor, so that the
  update can be HOT (the new row version on the same page, no index entry).
- `ledger`: an insert-only `outbox_published (id)` table, a row per published event.
- `position`: the relay's position in one relay_state row, updated once per batch; the
  outbox gets `xid` (the writing transaction) and the index `outbox_xid (xid, id)` instead
  of outbox_unpublished (what the code does now).

    .venv/bin/python bench/outbox_schemes.py --rows 60000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024

COMMON = """
    id BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT,
    channels TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
"""

SCHEMES: dict[str, dict[str, Any]] = {
    "mark": {
        "ddl": [
            f"CREATE TABLE outbox ({COMMON}, published_at DOUBLE PRECISION)",
            "CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
            "CREATE INDEX outbox_created ON outbox (created_at)",
        ],
        "record": ["UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])"],
        "tables": ["outbox"],
    },
    "hot": {
        "ddl": [
            f"CREATE TABLE outbox ({COMMON}, published_at DOUBLE PRECISION)"
            " WITH (fillfactor = {fillfactor})",
            "CREATE INDEX outbox_created ON outbox (created_at)",
        ],
        "record": ["UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])"],
        "tables": ["outbox"],
    },
    "ledger": {
        "ddl": [
            f"CREATE TABLE outbox ({COMMON})",
            "CREATE INDEX outbox_created ON outbox (created_at)",
            "CREATE TABLE outbox_published (id BIGINT PRIMARY KEY, published_at DOUBLE PRECISION)",
        ],
        "record": [
            "INSERT INTO outbox_published (id, published_at) SELECT unnest($1::bigint[]), $2"
        ],
        "tables": ["outbox", "outbox_published"],
    },
    "position": {
        "ddl": [
            f"CREATE TABLE outbox ({COMMON},"
            " xid BIGINT DEFAULT (pg_current_xact_id()::text::bigint))",
            "CREATE INDEX outbox_xid ON outbox (xid, id) WHERE xid IS NOT NULL",
            "CREATE INDEX outbox_created ON outbox (created_at)",
            "CREATE TABLE relay_state (name TEXT PRIMARY KEY, position TEXT NOT NULL,"
            " updated_at DOUBLE PRECISION NOT NULL)",
            "INSERT INTO relay_state VALUES ('outbox', '1:1:', 0)",
        ],
        # What a recording writes ($1 is unused: the position does not list the ids).
        "record": [
            "UPDATE relay_state SET position = pg_current_snapshot()::text, updated_at = $2"
            " WHERE name = 'outbox' AND cardinality($1::bigint[]) >= 0"
        ],
        "tables": ["outbox", "relay_state"],
    },
}


async def measure(url: str, scheme: str, args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    spec = SCHEMES[scheme]
    conn = await asyncpg.connect(url)
    try:
        for stmt in spec["ddl"]:
            await conn.execute(stmt.replace("{fillfactor}", str(args.fillfactor)))
        for table in spec["tables"]:
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        insert = await conn.prepare(
            "INSERT INTO outbox (conversation_id, channels, event, payload, created_at)"
            " VALUES ($1, '[\"inbox:1\",\"contact:x\"]', 'message.created', $2, $3)"
            " RETURNING id"
        )
        records = [await conn.prepare(sql) for sql in spec["record"]]
        payload = "p" * args.payload
        wal_start = await conn.fetchval("SELECT pg_current_wal_lsn()")
        started = time.monotonic()
        batch: list[int] = []
        for n in range(args.rows):
            batch.append(await insert.fetchval(n % 200, payload, time.time()))
            if len(batch) == args.batch or n == args.rows - 1:
                async with conn.transaction():
                    for record in records:
                        await record.fetch(batch, time.time())
                batch = []
        elapsed = time.monotonic() - started
        wal = await conn.fetchval("SELECT pg_current_wal_lsn() - $1::pg_lsn", wal_start)
        sizes = {
            table: await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            for table in spec["tables"]
        }
        await conn.execute("SELECT pg_stat_force_next_flush()")  # reported when idle
        await conn.execute("SELECT 1")
        stats = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'outbox'"
        )
        for table in spec["tables"]:
            await conn.execute(f"DROP TABLE {table}")
        total = sum(sizes.values())
        return {
            "scheme": scheme,
            "rows": args.rows,
            "seconds": round(elapsed, 1),
            "total_mb": round(total / MB, 2),
            "bytes_per_event": round(total / args.rows),
            "wal_mb": round(int(wal) / MB, 2),
            "wal_bytes_per_event": round(int(wal) / args.rows),
            "sizes_mb": {t: round(s / MB, 2) for t, s in sizes.items()},
            "outbox_updates": stats["n_tup_upd"] if stats else None,
            "outbox_hot_updates": stats["n_tup_hot_upd"] if stats else None,
        }
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=10, help="events per recording")
    parser.add_argument("--payload", type=int, default=1000, help="bytes of payload per event")
    parser.add_argument("--fillfactor", type=int, default=50, help="for the `hot` scheme")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    schemes = args.schemes.split(",")
    if not 1 <= args.rows <= 1_000_000 or not 1 <= args.batch <= 10_000:
        raise SystemExit("--rows 1-1000000, --batch 1-10000")
    if not 10 <= args.fillfactor <= 100 or not 0 <= args.payload <= 100_000:
        raise SystemExit("--fillfactor 10-100, --payload 0-100000")
    if unknown := set(schemes) - set(SCHEMES):
        raise SystemExit(f"unknown schemes: {sorted(unknown)}")
    from bench.outbox_growth import start_cluster

    cluster = start_cluster("off")
    results = []
    try:
        url = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        for scheme in schemes:
            result = asyncio.run(measure(url, scheme, args))
            results.append(result)
            print(
                f"{scheme:9s} {result['total_mb']:8.2f} MB ({result['bytes_per_event']} B/event),"
                f" WAL {result['wal_mb']:8.2f} MB ({result['wal_bytes_per_event']} B/event),"
                f" outbox updates {result['outbox_updates']} (HOT {result['outbox_hot_updates']}),"
                f" {result['seconds']} s",
                flush=True,
            )
    finally:
        cluster.destroy()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
