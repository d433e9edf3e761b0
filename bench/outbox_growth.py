"""Benchmark: how fast the outbox (and the conversations table) grows on disk on PostgreSQL.

Issue 14 item 6. Starts everything itself on 127.0.0.1 free ports and tears it down at the
end (also on Ctrl-C): a throwaway PostgreSQL cluster (initdb in a temp dir, as
tests/pgcluster.py does: its own port, `fsync=off`, stock settings otherwise, and
`autovacuum` as --autovacuum says), a `redis-server` with persistence off, one
`python -m server` (REDIS_URL, RUN_RELAY=0) and one `python -m workers` (the outbox relay),
both run from --code (default: this checkout; point it at an exported older commit to measure
the code before a change). `--pg DSN` uses a running server instead (a throwaway database
on it, CREATE DATABASE and DROP at the end; its own autovacuum setting then applies).

With `--autovacuum off`, every table of the database also gets `autovacuum_enabled = false`
(and the same for its TOAST table) before the load starts, so what a row update leaves
behind stays on disk; with `on`, autovacuum runs with PostgreSQL's default settings.

Then --visitors visitors (each with a conversation, opened before the run) post
`POST /api/v1/widget/messages` at --rate messages a second for --seconds, round robin, each
message at its slot of a fixed schedule (late answers do not slow the schedule down; at most
--in-flight requests at once). Every --sample seconds, and at the end, it reads for outbox,
conversations, messages and relay_state (when the table exists):
`pg_total_relation_size`, the heap alone, the indexes, and from pg_stat_user_tables the rows
inserted, updated (and HOT-updated), dead, and the autovacuum count.

It prints one line per sample and a summary (growth of each table in MB, and MB per hour at
that rate; CPU milliseconds per message of the web process, the worker and, on its own
cluster, PostgreSQL); `--json FILE` writes samples and summary. Exit status 1 when a request failed.

    .venv/bin/python bench/outbox_growth.py --autovacuum off --seconds 600
    .venv/bin/python bench/outbox_growth.py --autovacuum on --seconds 600
    git archive <commit> | tar -x -C /tmp/before
    .venv/bin/python bench/outbox_growth.py --code /tmp/before --autovacuum off --seconds 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WIDGET = "/api/v1/widget"
TABLES = ("outbox", "conversations", "messages", "relay_state")
MB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not listen within 30 s") from None
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(stack: Stack, cluster: Any) -> dict[str, float]:
    """CPU seconds so far of the web process, the worker, and (own cluster) PostgreSQL's
    processes (backends that ended are not counted: the app's connections stay open)."""
    out = {name: cpu_seconds(stack.procs[name].pid) for name in ("server", "worker")}
    if cluster is not None:
        out["postgres"] = sum(cpu_seconds(pid) for pid in cluster.pids())
    return out


class Stack:
    """redis-server, the throwaway database, one web process and one worker."""

    def __init__(self, code: Path, pg: str, tmp: Path) -> None:
        self.code = code
        self.pg = pg
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.db_name: str | None = None
        self.env: dict[str, str] = {}
        self.port = 0

    @property
    def database_url(self) -> str:
        return f"{self.pg.rsplit('/', 1)[0]}/{self.db_name}"

    def start(self) -> None:
        redis_port = _free_port()
        self._spawn(
            "redis",
            [
                *("redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.tmp)),
            ],
        )
        _wait_listening(self.procs["redis"], redis_port, self.tmp / "redis.log", "redis")
        self.db_name = f"bench_outbox_{uuid.uuid4().hex[:10]}"
        asyncio.run(_execute(self.pg, f'CREATE DATABASE "{self.db_name}"'))
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url.replace("postgresql://", "postgresql+asyncpg://"),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DATA_DIR": str(self.tmp),
            "LOG_LEVEL": "WARNING",
            "SEED_DEMO": "0",
            "RUN_RELAY": "0",
            "MESSAGES_PER_MINUTE": "1000000",
            "MAX_CONNECTIONS_PER_ADDRESS": "1000000",
            "LIMIT_CONTACTS_PER_ADDRESS": "off",
            # The code before a change may lack a setting this one has: read it from --code.
            "PYTHONPATH": str(self.code),
        }
        self.admin("create-account", "--name", "probe")  # applies the schema once
        self.port = _free_port()
        self._spawn(
            "server", [sys.executable, "-m", "server"], {**self.env, "PORT": str(self.port)}
        )
        self._spawn("worker", [sys.executable, "-m", "workers"], self.env)
        _wait_listening(self.procs["server"], self.port, self.tmp / "server.log", "server")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(argv, cwd=self.code, env=env, stdout=log, stderr=log)

    def admin(self, *args: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "server", "admin", *args],
            cwd=self.code,
            env=self.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return json.loads(out.stdout)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.tmp / f"{name}.log").read_text()[-3000:]
                raise SystemExit(f"{name} exited with {proc.returncode}:\n{log}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.db_name:
            drop = f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'
            try:
                asyncio.run(_execute(self.pg, drop))
            except Exception as exc:
                print(f"warning: could not drop database {self.db_name}: {exc}", file=sys.stderr)


async def _execute(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def disable_autovacuum(url: str) -> list[str]:
    """autovacuum_enabled = false on every table of the database (and their TOAST tables)."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        for table in tables:
            await conn.execute(
                f'ALTER TABLE "{table}" SET (autovacuum_enabled = false,'
                " toast.autovacuum_enabled = false)"
            )
        return sorted(tables)
    finally:
        await conn.close()


SIZES = """
SELECT c.relname AS table,
       pg_total_relation_size(c.oid) AS total,
       pg_relation_size(c.oid) AS heap,
       pg_indexes_size(c.oid) AS indexes,
       s.n_tup_ins AS inserted, s.n_tup_upd AS updated, s.n_tup_hot_upd AS hot_updated,
       s.n_tup_del AS deleted, s.n_live_tup AS live, s.n_dead_tup AS dead,
       s.autovacuum_count AS autovacuums
FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relname = ANY($1::text[])
"""


async def sample(url: str) -> dict[str, dict[str, int]]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        rows = await conn.fetch(SIZES, list(TABLES))
    finally:
        await conn.close()
    return {r["table"]: {k: int(v) for k, v in dict(r).items() if k != "table"} for r in rows}


async def open_visitors(url: str, website_token: str, n: int) -> list[str]:
    """n visitors through POST /widget/config, each with one message (not measured)."""
    import aiohttp

    tokens: list[str] = []
    todo = iter(range(n))
    params = {"website_token": website_token}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one() -> None:
            for _ in todo:
                async with session.post(f"{url}{WIDGET}/config", params=params, json={}) as r:
                    if r.status != 200:
                        raise SystemExit(f"widget/config: {r.status} {await r.text()}")
                    token = (await r.json())["website_channel_config"]["auth_token"]
                async with session.post(
                    f"{url}{WIDGET}/messages",
                    params=params,
                    headers={"X-Auth-Token": token},
                    json={"message": {"content": "hello"}},
                ) as r:
                    if r.status != 200:
                        raise SystemExit(f"widget/messages: {r.status} {await r.text()}")
                tokens.append(token)

        await asyncio.gather(*(one() for _ in range(16)))
    return tokens


async def load(
    stack: Stack, website_token: str, tokens: list[str], args: argparse.Namespace, cluster: Any
) -> dict[str, Any]:
    import aiohttp

    url = f"http://127.0.0.1:{stack.port}"
    params = {"website_token": website_token}
    statuses: dict[int, int] = {}
    samples: list[dict[str, Any]] = []
    in_flight = asyncio.Semaphore(args.in_flight)
    total = int(args.rate * args.seconds)
    content = "m" * args.content_bytes
    start_sizes = await sample(stack.database_url)
    cpu_start = cpu_by_process(stack, cluster)
    started = time.monotonic()
    samples.append({"t": 0.0, "sent": 0, "tables": start_sizes})
    print_sample(samples[-1], start_sizes)

    async def sampler() -> None:
        n = 1
        while True:
            await asyncio.sleep(max(0.0, started + n * args.sample - time.monotonic()))
            n += 1
            stack.check_alive()
            try:
                tables = await sample(stack.database_url)
            except Exception as exc:  # one sample lost, not the run
                print(f"sample failed: {exc!r}", file=sys.stderr, flush=True)
                continue
            t = round(time.monotonic() - started, 1)
            samples.append({"t": t, "sent": sent, "tables": tables})
            print_sample(samples[-1], start_sizes)

    sent = 0
    connector = aiohttp.TCPConnector(limit=args.in_flight)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(i: int) -> None:
            try:
                async with session.post(
                    f"{url}{WIDGET}/messages",
                    params=params,
                    headers={"X-Auth-Token": tokens[i % len(tokens)]},
                    json={"message": {"content": f"{i} {content}"}},
                ) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
            except Exception:
                statuses[0] = statuses.get(0, 0) + 1
            finally:
                in_flight.release()

        sampling = asyncio.ensure_future(sampler())
        tasks = set()
        try:
            for i in range(total):
                await asyncio.sleep(max(0.0, started + i / args.rate - time.monotonic()))
                await in_flight.acquire()
                task = asyncio.ensure_future(post(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            if tasks:
                await asyncio.wait(tasks)
            # Let the relay catch up, then the last sample.
            await asyncio.sleep(2.0)
        finally:
            sampling.cancel()
    elapsed = time.monotonic() - started
    cpu_end = cpu_by_process(stack, cluster)
    end_sizes = await sample(stack.database_url)
    samples.append({"t": round(elapsed, 1), "sent": sent, "tables": end_sizes})
    print_sample(samples[-1], start_sizes)
    growth = {
        table: {
            "total_mb": round((end_sizes[table]["total"] - start_sizes[table]["total"]) / MB, 2),
            "mb_per_hour": round(
                (end_sizes[table]["total"] - start_sizes[table]["total"]) / MB * 3600 / elapsed, 1
            ),
            "bytes_per_message": round(
                (end_sizes[table]["total"] - start_sizes[table]["total"]) / max(sent, 1)
            ),
            "updated": end_sizes[table]["updated"] - start_sizes[table]["updated"],
            "hot_updated": end_sizes[table]["hot_updated"] - start_sizes[table]["hot_updated"],
            "dead_at_end": end_sizes[table]["dead"],
            "autovacuums": end_sizes[table]["autovacuums"] - start_sizes[table]["autovacuums"],
        }
        for table in TABLES
        if table in end_sizes and table in start_sizes
    }
    return {
        "elapsed": round(elapsed, 1),
        "cpu_ms_per_message": {
            name: round((cpu_end[name] - cpu_start[name]) * 1000 / max(sent, 1), 3)
            for name in cpu_end
        },
        "sent": sent,
        "rate": round(sent / elapsed, 1),
        "statuses": statuses,
        "growth": growth,
        "samples": samples,
    }


def print_sample(s: dict[str, Any], start: dict[str, dict[str, int]]) -> None:
    parts = [f"t={s['t']:6.1f}s sent={s['sent']:6d}"]
    for table in ("outbox", "conversations", "relay_state"):
        now = s["tables"].get(table)
        if now is None:
            continue
        grown = (now["total"] - start[table]["total"]) / MB
        parts.append(
            f"{table}: {now['total'] / MB:7.2f} MB (+{grown:.2f}),"
            f" upd {now['updated'] - start[table]['updated']}"
            f" hot {now['hot_updated'] - start[table]['hot_updated']} dead {now['dead']}"
        )
    print(" | ".join(parts), flush=True)


def start_cluster(autovacuum: str) -> Any:
    """A PostgreSQL cluster of our own, so that --autovacuum is the server's setting."""
    from tests.pgcluster import PgCluster

    cluster = PgCluster().init()
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write(f"\nautovacuum = {autovacuum}\n")
    return cluster.start()


def run(args: argparse.Namespace) -> dict[str, Any]:
    code = Path(args.code).resolve()
    if not (code / "server" / "__main__.py").exists():
        raise SystemExit(f"--code {code}: no server package there")
    tmp = Path(tempfile.mkdtemp(prefix="outbox_growth_"))
    cluster = None
    pg = args.pg
    if pg is None:
        cluster = start_cluster(args.autovacuum)
        pg = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    stack = Stack(code, pg, tmp)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        stack.start()
        account = stack.admin("create-account", "--name", "bench")
        inbox = stack.admin("create-inbox", "--account", str(account["id"]), "--name", "bench")
        tokens = asyncio.run(
            open_visitors(f"http://127.0.0.1:{stack.port}", inbox["website_token"], args.visitors)
        )
        disabled = (
            asyncio.run(disable_autovacuum(stack.database_url)) if args.autovacuum == "off" else []
        )
        print(
            f"code {code}, database {stack.db_name}, autovacuum {args.autovacuum}"
            f" ({len(disabled)} tables set autovacuum_enabled = false),"
            f" {args.rate} msg/s for {args.seconds} s over {len(tokens)} conversations",
            flush=True,
        )
        result = asyncio.run(load(stack, inbox["website_token"], tokens, args, cluster))
        result.update(
            {
                "code": str(code),
                "autovacuum": args.autovacuum,
                "server": "own cluster (fsync=off)" if cluster is not None else args.pg,
                "autovacuum_disabled_on": disabled,
                "visitors": len(tokens),
                "target_rate": args.rate,
            }
        )
        return result
    finally:
        stack.stop()
        if cluster is not None:
            cluster.destroy()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", default=str(ROOT), help="source tree to run the server from")
    parser.add_argument("--pg", help="a running server's DSN (default: start a cluster)")
    parser.add_argument("--autovacuum", choices=("on", "off"), default="off")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--content-bytes", type=int, default=80)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--json", help="write samples and summary to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    if not (0 < args.rate <= 2000 and 0 < args.seconds <= 7200 and 1 <= args.visitors <= 10000):
        raise SystemExit("--rate 0-2000, --seconds 0-7200, --visitors 1-10000")
    if not 1 <= args.in_flight <= 1000 or args.sample <= 0:
        raise SystemExit("--in-flight 1-1000, --sample > 0")
    result = run(args)
    summary = ("elapsed", "sent", "rate", "statuses", "cpu_ms_per_message", "growth")
    print(json.dumps({k: result[k] for k in summary}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if set(result["statuses"]) <= {200} else 1


if __name__ == "__main__":
    sys.exit(main())
