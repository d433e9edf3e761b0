"""Benchmark: visitors posting messages (`POST /api/v1/widget/messages`) to one server.

Starts `python -m server` on the embedded default (a SQLite file in a temp dir, no Redis)
unless --url is given, creates --contacts visitors through `POST /api/v1/widget/config`,
sends each one message (which opens its conversation; not measured), then drives POSTs from
--concurrency keep-alive connections spread over --procs client processes until --seconds
have passed or --count messages were sent, whichever comes first. Reports committed
messages per second (200 answers / wall time, cross-checked against the rows in the SQLite
file), latency percentiles, errors and the CPU the server and the clients used.

The load generator shares the machine with the server, so it is a lean raw HTTP/1.1 client
(one request in flight per connection) rather than aiohttp's client, which would cost the
server a large part of a core. aiohttp is only used for the setup requests.

Each visitor's flood guard allows MESSAGES_PER_MINUTE (default 200) messages a minute: the
defaults (400 contacts, at most 50,000 messages) stay under it; the script warns when a run
would not.

    .venv/bin/python bench/http_messages.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
REQUEST_TIMEOUT = 30.0
WIDGET = "/api/v1/widget"


# --- the server under test -------------------------------------------------------------


@dataclass
class Server:
    url: str
    website_token: str
    db_path: Path | None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _admin(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "server", "admin", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def start_server(tmp: Path, extra_env: dict[str, str]) -> Server:
    """A fresh server on a SQLite file in `tmp`, with an inbox of its own for the bench."""
    port = _free_port()
    db_path = tmp / "chat.db"
    env = {
        **os.environ,
        "DATA_DIR": str(tmp),
        "DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "SEED_DEMO": "0",
        # Every bench connection comes from 127.0.0.1: lift the per-address cap (default 256).
        "MAX_CONNECTIONS_PER_ADDRESS": "1000000",
        # Hundreds of visitors from one address: a flood to the contact limit.
        "LIMIT_CONTACTS_PER_ADDRESS": "off",
        **extra_env,
    }
    env.pop("REDIS_URL", None)
    account = _admin(env, "create-account", "--name", "bench")
    inbox = _admin(env, "create-inbox", "--account", str(account["id"]), "--name", "bench")
    log_path = tmp / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("server did not start listening within 30 s") from None
            time.sleep(0.05)
    return Server(
        url=f"http://127.0.0.1:{port}",
        website_token=inbox["website_token"],
        db_path=db_path,
        proc=proc,
        log_path=log_path,
    )


def stop_server(server: Server) -> None:
    if server.proc is None or server.proc.poll() is not None:
        return
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_messages(db_path: Path) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


# --- setup: visitors --------------------------------------------------------------------


async def create_contacts(server: Server, n: int, parallel: int = 16) -> list[str]:
    """n visitors, each with the contact JWT the widget keeps in X-Auth-Token."""
    import aiohttp

    tokens: list[str] = []
    todo = iter(range(n))
    url = f"{server.url}{WIDGET}/config"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one() -> None:
            for _ in todo:
                async with session.post(
                    url, params={"website_token": server.website_token}, json={}
                ) as resp:
                    if resp.status != 200:
                        raise SystemExit(f"widget/config: {resp.status} {await resp.text()}")
                    body = await resp.json()
                tokens.append(body["website_channel_config"]["auth_token"])

        await asyncio.gather(*(one() for _ in range(parallel)))
    return tokens


# --- the load generator (runs in --procs processes) -------------------------------------


def _request(host: str, path: str, token: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        "User-Agent: bench/http_messages\r\n"
        f"X-Auth-Token: {token}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _drive(
    url: str,
    website_token: str,
    tokens: list[str],
    connections: int,
    budget: int,
    start_at: float,
    seconds: float,
    tag: str,
    once: bool = False,
) -> dict[str, Any]:
    """`connections` keep-alive connections, each cycling over its own share of `tokens`;
    with `once`, each token sends exactly one message."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = f"{WIDGET}/messages?website_token={website_token}"
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: dict[int, str] = {}
    tickets = iter(range(budget))
    first_sent: list[float] = []
    last_done: list[float] = []

    async def connection(k: int) -> None:
        mine = tokens[k::connections]
        if not mine:
            return
        reader, writer = await asyncio.open_connection(host, port)
        try:
            delay = start_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            deadline = time.perf_counter() + seconds
            first_sent.append(time.perf_counter())
            for i, n in enumerate(range(len(mine)) if once else tickets):
                if time.perf_counter() >= deadline:
                    break
                token = mine[i % len(mine)]
                body = b'{"message":{"content":"bench %s %d","echo_id":"%s-%d"}}' % (
                    tag.encode(),
                    n,
                    tag.encode(),
                    n,
                )
                t0 = time.perf_counter()
                writer.write(_request(f"{host}:{port}", path, token, body))
                try:
                    status, resp = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    statuses[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[str(status)] += 1
                if status != 200:
                    samples.setdefault(status, resp[:300].decode(errors="replace"))
            last_done.append(time.perf_counter())
        finally:
            writer.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(connection(k) for k in range(connections)))
    return {
        "latencies": latencies,
        "statuses": dict(statuses),
        "samples": {str(k): v for k, v in samples.items()},
        "wall": (max(last_done) - min(first_sent)) if first_sent and last_done else 0.0,
        "cpu": time.process_time() - cpu0,
    }


def drive_process(*args: Any) -> dict[str, Any]:
    """Entry point of one client process."""
    try:
        import uvloop

        return uvloop.run(_drive(*args))
    except ImportError:
        return asyncio.run(_drive(*args))


# --- the run ----------------------------------------------------------------------------


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmpdir = None
    if args.url:
        server = Server(
            url=args.url.rstrip("/"),
            website_token=args.website_token,
            db_path=Path(args.sqlite) if args.sqlite else None,
        )
        if not server.website_token:
            raise SystemExit("--url needs --website-token")
    else:
        tmpdir = tempfile.TemporaryDirectory(prefix="bench-http-")
        extra = {"MESSAGES_PER_MINUTE": str(args.messages_per_minute)}
        if args.messages_per_minute is None:
            extra = {}
        server = start_server(Path(tmpdir.name), extra)
    try:
        per_minute = args.messages_per_minute or 200
        per_contact = args.count / args.contacts + 1
        if per_contact > per_minute:
            print(
                f"warning: up to {per_contact:.0f} messages per contact may trip the flood "
                f"guard ({per_minute}/min); raise --contacts or --messages-per-minute",
                file=sys.stderr,
            )
        tokens = asyncio.run(create_contacts(server, args.contacts))
        # Warm-up, not measured: every visitor's first message opens its conversation.
        warm = drive_process(
            server.url,
            server.website_token,
            tokens,
            min(args.concurrency, len(tokens)),
            len(tokens),
            0.0,
            60.0,
            "warmup",
            True,
        )
        if warm["statuses"] != {"200": len(tokens)}:
            raise SystemExit(f"warm-up failed: {warm['statuses']} {warm['samples']}")

        rows_before = count_messages(server.db_path) if server.db_path else None
        server_cpu0 = cpu_seconds(server.proc.pid) if server.proc else None
        procs = max(1, min(args.procs, args.concurrency))
        start_at = time.time() + 1.5
        jobs = []
        with ProcessPoolExecutor(procs, mp_context=get_context("spawn")) as pool:
            for i in range(procs):
                share = list(range(i, args.concurrency, procs))
                mine = [t for j, t in enumerate(tokens) if j % procs == i]
                jobs.append(
                    pool.submit(
                        drive_process,
                        server.url,
                        server.website_token,
                        mine,
                        len(share),
                        args.count // procs + (1 if i < args.count % procs else 0),
                        start_at,
                        args.seconds,
                        f"p{i}",
                    )
                )
            results = [job.result(timeout=args.seconds + 120) for job in jobs]
        server_cpu = cpu_seconds(server.proc.pid) - server_cpu0 if server.proc else None
        rows_after = count_messages(server.db_path) if server.db_path else None
    finally:
        stop_server(server)
        if tmpdir is not None and args.keep:
            print(f"kept {tmpdir.name}", file=sys.stderr)
        elif tmpdir is not None:
            tmpdir.cleanup()

    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: Counter[str] = Counter()
    samples: dict[str, str] = {}
    for r in results:
        statuses.update(r["statuses"])
        samples.update(r["samples"])
    wall = max(r["wall"] for r in results)
    ok = statuses.get("200", 0)
    committed = None if rows_before is None else rows_after - rows_before  # type: ignore[operator]
    return {
        "contacts": args.contacts,
        "concurrency": args.concurrency,
        "procs": procs,
        "wall_s": round(wall, 3),
        "ok": ok,
        "errors": sum(v for k, v in statuses.items() if k != "200"),
        "statuses": dict(statuses),
        "error_samples": samples,
        "msgs_per_s": round(ok / wall, 1) if wall else 0.0,
        "rows_committed": committed,
        "rows_match": None if committed is None else committed == ok,
        "latency_ms": {
            "p50": round(pct(latencies, 50) * 1000, 2),
            "p90": round(pct(latencies, 90) * 1000, 2),
            "p99": round(pct(latencies, 99) * 1000, 2),
            "max": round(latencies[-1] * 1000, 2) if latencies else None,
            "mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        },
        "server_cpu_cores": round(server_cpu / wall, 2) if server_cpu and wall else None,
        "server_cpu_ms_per_msg": round(server_cpu * 1000 / ok, 3) if server_cpu and ok else None,
        "client_cpu_cores": round(sum(r["cpu"] for r in results) / wall, 2) if wall else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measured duration (bound)")
    p.add_argument("--count", type=int, default=50_000, help="at most this many messages")
    p.add_argument("--contacts", type=int, default=400, help="visitors posting")
    p.add_argument("--concurrency", type=int, default=64, help="connections in flight")
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument(
        "--messages-per-minute",
        type=int,
        default=None,
        help="MESSAGES_PER_MINUTE for the started server (default: the server's, 200)",
    )
    p.add_argument("--url", help="use a running server instead of starting one")
    p.add_argument("--website-token", help="with --url: the inbox's website_token")
    p.add_argument("--sqlite", help="with --url: its SQLite file, to count committed rows")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (database, log)")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.count <= 0 or args.contacts <= 0 or args.concurrency <= 0:
        p.error("--seconds, --count, --contacts and --concurrency must be positive")
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return 0
    lat = result["latency_ms"]
    print(
        f"POST {WIDGET}/messages: {result['ok']} ok in {result['wall_s']} s = "
        f"{result['msgs_per_s']} msgs/s committed; errors {result['errors']} {result['statuses']}"
    )
    print(
        f"latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}  "
        f"mean {lat['mean']}"
    )
    print(
        f"rows committed {result['rows_committed']} (match: {result['rows_match']}); "
        f"cpu cores: server {result['server_cpu_cores']} "
        f"({result['server_cpu_ms_per_msg']} ms/msg), clients {result['client_cpu_cores']}; "
        f"{result['contacts']} contacts, {result['concurrency']} connections, "
        f"{result['procs']} client procs"
    )
    for status, sample in result["error_samples"].items():
        print(f"  {status}: {sample}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
