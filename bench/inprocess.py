"""Work per visitor message, in one process: the app and an aiohttp client together.

Starts `create_app` (embedded relay, as deployed on the default) on a temporary SQLite file or
a throwaway PostgreSQL database, makes 50 visitors with a conversation each, warms up with 200
messages, then posts `--count` messages (`--concurrency` at once) and prints the process's CPU
time per message (client included: the same on both sides of a comparison).

CPU time moves with the machine's load. For a figure that does not, count instructions under
callgrind, twice, and take the difference (what the start-up and warm-up cost cancels out):

    valgrind --tool=callgrind python bench/inprocess.py --count 200 --concurrency 1
    valgrind --tool=callgrind python bench/inprocess.py --count 700 --concurrency 1
    (Collected(700) - Collected(200)) / 500 = instructions per message

With `--concurrency 1` every SQLite write is a group-commit batch of its own, so the count does
not depend on timing (with more at once, how writes fall into batches does). `--repo DIR`
measures another checkout (e.g. a `git archive` of an older commit) with this interpreter."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(url: str, data_dir: str, args: argparse.Namespace) -> dict[str, Any]:
    from aiohttp.test_utils import TestClient, TestServer

    from server.app import create_app
    from server.services import SERVICES
    from server.settings import Settings
    from server.store import accounts as accounts_store

    env = {
        "DATABASE_URL": url,
        "SECRET_KEY_BASE": "bench-" + "x" * 40,
        "DATA_DIR": data_dir,
        "SEED_DEMO": "0",
        "AUTO_MIGRATE": "1",  # PostgreSQL does not migrate by itself
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "0",
        "MESSAGES_PER_MINUTE": "100000",
        "LIMIT_CONTACTS_PER_ADDRESS": "off",
    }
    app = create_app(Settings.from_env(env))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:

        async def world(conn: Any) -> str:
            account = await accounts_store.create_account(conn, "Bench")
            inbox = await accounts_store.create_inbox(conn, account_id=account["id"], name="B")
            return str(inbox["website_token"])

        token = await app[SERVICES].db.write(world)
        heads = []
        for _ in range(50):
            resp = await client.post(f"/api/v1/widget/config?website_token={token}")
            auth = (await resp.json())["website_channel_config"]["auth_token"]
            heads.append({"X-Auth-Token": auth})
        url_messages = f"/api/v1/widget/messages?website_token={token}"
        gate = asyncio.Semaphore(args.concurrency)

        async def post(i: int) -> None:
            async with gate:
                body = {"message": {"content": f"m{i}", "echo_id": f"e{i}"}}
                resp = await client.post(url_messages, json=body, headers=heads[i % len(heads)])
                assert resp.status == 200, await resp.text()
                await resp.read()

        await asyncio.gather(*(post(i) for i in range(200)))  # opens the conversations, warms up
        cpu, wall = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(200, 200 + args.count)))
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        return {
            "engine": args.engine,
            "repo": str(args.repo),
            "count": args.count,
            "concurrency": args.concurrency,
            "cpu_ms_per_msg": round(cpu / args.count * 1000, 4),
            "msgs_per_s": round(args.count / wall),
            "loadavg": os.getloadavg()[0],
        }
    finally:
        await client.close()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if args.engine == "sqlite":
            print(json.dumps(await measure(f"sqlite+aiosqlite:///{tmp}/bench.db", tmp, args)))
            return
        import asyncpg

        name = f"bench_inprocess_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(args.pg)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            base = args.pg.rsplit("/", 1)[0].split("://", 1)[1]
            url = f"postgresql+asyncpg://{base}/{name}"
            print(json.dumps(await measure(url, tmp, args)))
        finally:
            admin = await asyncpg.connect(args.pg)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--count", type=int, default=3000, help="messages measured")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if not 1 <= args.count <= 100_000 or not 1 <= args.concurrency <= 1000:
        raise SystemExit("--count must be 1..100000 and --concurrency 1..1000")
    sys.path.insert(0, str(args.repo.resolve()))
    os.chdir(args.repo)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args))
