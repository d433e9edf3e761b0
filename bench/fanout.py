"""Benchmark: realtime delivery on the scaled configuration (two web processes, Redis, worker).

Starts everything itself on 127.0.0.1 free ports and tears it down at the end (also on
Ctrl-C): a `redis-server` with persistence off, a throwaway PostgreSQL database (CREATE
DATABASE on --pg, DROP at the end), two `python -m server` processes with REDIS_URL, and one
`python -m workers` (the outbox relay). Then one of three modes:

- `latency`: --sockets sockets (visitors, each with its own contact and conversation, plus
  --agent-sockets agent sockets in the inbox) spread over both servers; a loader process
  POSTs visitor messages (`POST /api/v1/widget/messages`) at --rate msg/s for --seconds,
  alternating servers, after --warmup seconds at the same rate that are not counted. Each
  message's content carries a sequence number; the socket readers time every
  `message.created` frame against the POST's send time. Reports p50/p90/p99/max
  POST-to-socket latency, expected vs received frames, and the CPU each process used.
- `throughput`: --sockets agent sockets, all on server 1, subscribed to one inbox; messages
  posted to server 2 at --rate msg/s, so every event fans out to every socket. Reports the
  frames/s the sockets received and server 1's CPU.
- `idle`: --sockets visitor sockets (each its own contact, subscribed) on server 1; reports
  the server's VmRSS before and after, and KB per idle connection.
- `jitter`: AnyCable's reliability benchmark (bench/jitter.py): --sockets sockets (--tabs per
  visitor) over both servers, each dropped about every --drop-every s and away about
  --offline s, while --rate msg/s are posted; reports the share of messages every socket
  ended up with, duplicates, order, and the replay time.

The client shares the machine with the servers, so it is lean: raw asyncio protocols that
speak just enough WebSocket (unmasked server frames, client frames with a zero mask) and raw
HTTP/1.1 keep-alive requests for the load, in separate processes from the socket readers.

    .venv/bin/python bench/fanout.py latency --sockets 2000 --rate 500 --seconds 20
    .venv/bin/python bench/fanout.py throughput --sockets 2000 --rate 50 --seconds 15
    .venv/bin/python bench/fanout.py idle --sockets 10000
    .venv/bin/python bench/fanout.py jitter --sockets 2000 --rate 100 --seconds 60
    .venv/bin/python bench/fanout.py jitter --protocol ext --sockets 2000 --rate 100 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WIDGET = "/api/v1/widget"
CONNECT_PARALLEL = 200
SETUP_TIMEOUT = 300.0
SLOW_MS = 25  # issue 3's p99 target: frames slower than this are counted by second


# --- processes under test ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Stack:
    """Everything the bench started, so teardown can stop all of it."""

    tmp: Path
    pg_admin_url: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    db_name: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self, extra_env: dict[str, str]) -> None:
        redis_port = _free_port()
        self._spawn(
            "redis",
            [
                *("redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
                *("--client-output-buffer-limit", "pubsub", "0", "0", "0"),
            ],
        )
        _wait_listening(self.procs["redis"], redis_port, self.tmp / "redis.log", "redis")
        self.db_name = f"bench_fanout_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg(self.pg_admin_url, f'CREATE DATABASE "{self.db_name}"'))
        base = self.pg_admin_url.rsplit("/", 1)[0]
        self.env = {
            **os.environ,
            "DATABASE_URL": f"{base}/{self.db_name}",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DATA_DIR": str(self.tmp),
            "LOG_LEVEL": "WARNING",
            "SEED_DEMO": "0",
            "RUN_RELAY": "0",
            "MESSAGES_PER_MINUTE": "1000000",
            # Thousands of sockets from 127.0.0.1: lift the per-address cap (default 256).
            "MAX_CONNECTIONS_PER_ADDRESS": "1000000",
            # Thousands of visitors from one address: a flood to the contact limit.
            "LIMIT_CONTACTS_PER_ADDRESS": "off",
            **extra_env,
        }
        subprocess.run(  # the schema, as a deploy does before starting its processes
            [sys.executable, "-m", "server", "migrate"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        for name in ("server1", "server2"):
            port = _free_port()
            self.ports[name] = port
            self._spawn(
                name,
                [sys.executable, "-m", "server"],
                env={**self.env, "PORT": str(port)},
                limits=True,
            )
        self._spawn("worker", [sys.executable, "-m", "workers"], env=self.env)
        for name in ("server1", "server2"):
            _wait_listening(self.procs[name], self.ports[name], self.tmp / f"{name}.log", name)

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, limits: bool = False
    ) -> None:
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            preexec_fn=_raise_nofile if limits else None,
        )

    def admin(self, *args: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "server", "admin", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return json.loads(out.stdout)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def stop(self) -> None:
        for name in ("server1", "server2", "worker", "redis"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.db_name:
            try:
                asyncio.run(_pg(self.pg_admin_url, f'DROP DATABASE IF EXISTS "{self.db_name}"'))
            except Exception as exc:
                print(f"warning: could not drop database {self.db_name}: {exc}", file=sys.stderr)


async def _pg(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# --- setup through the public API --------------------------------------------------------


@dataclass
class World:
    account_id: int
    website_token: str
    agents: list[dict[str, Any]]
    visitors: list[tuple[str, str]]  # (auth_token, pubsub_token)


def make_world(
    stack: Stack, *, agents: int, visitors: int, open_conversations: bool, bulk: bool = False
) -> World:
    account = stack.admin("create-account", "--name", "bench")
    inbox = stack.admin("create-inbox", "--account", str(account["id"]), "--name", "bench")
    agent_rows = [
        stack.admin(
            "create-agent",
            "--account",
            str(account["id"]),
            "--name",
            f"agent {i}",
            "--email",
            f"agent{i}@bench.local",
            "--inbox",
            str(inbox["id"]),
        )
        for i in range(agents)
    ]
    if bulk:
        tokens = asyncio.run(_bulk_visitors(stack, account["id"], inbox["id"], visitors))
        return World(account["id"], inbox["website_token"], agent_rows, [("", t) for t in tokens])
    urls = [stack.url("server1"), stack.url("server2")]
    found = asyncio.run(
        _create_visitors(urls, inbox["website_token"], visitors, open_conversations)
    )
    return World(account["id"], inbox["website_token"], agent_rows, found)


async def _create_visitors(
    urls: list[str], website_token: str, n: int, open_conversations: bool, parallel: int = 32
) -> list[tuple[str, str]]:
    """n visitors through POST /widget/config; with open_conversations, each sends one
    message (not measured) so its conversation exists before the run."""
    import aiohttp

    out: list[tuple[str, str]] = []
    todo = iter(range(n))
    params = {"website_token": website_token}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> None:
            for i in todo:
                url = urls[i % len(urls)]
                async with session.post(f"{url}{WIDGET}/config", params=params, json={}) as r:
                    if r.status != 200:
                        raise SystemExit(f"widget/config: {r.status} {await r.text()}")
                    body = await r.json()
                token = body["website_channel_config"]["auth_token"]
                if open_conversations:
                    async with session.post(
                        f"{url}{WIDGET}/messages",
                        params=params,
                        headers={"X-Auth-Token": token},
                        json={"message": {"content": "hello", "echo_id": "warmup"}},
                    ) as r:
                        if r.status != 200:
                            raise SystemExit(f"widget/messages: {r.status} {await r.text()}")
                out.append((token, body["contact"]["pubsub_token"]))

        await asyncio.gather(*(one() for _ in range(parallel)))
    return out


async def _bulk_visitors(stack: Stack, account_id: int, inbox_id: int, n: int) -> list[str]:
    """n contacts with a contact_inbox each, inserted in one statement: for the idle run,
    which measures sockets, not the (much slower) POST /widget/config path."""
    import asyncpg

    url = stack.env["DATABASE_URL"]
    tokens = [uuid.uuid4().hex for _ in range(n)]
    conn = await asyncpg.connect(url, timeout=10)
    try:
        now = time.time()
        await conn.execute(
            """
            WITH c AS (
                INSERT INTO contacts (account_id, name, created_at, updated_at)
                SELECT $1, 'idle ' || g, $3, $3 FROM generate_series(1, $2) g
                RETURNING id
            ), numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM c)
            INSERT INTO contact_inboxes
                (contact_id, inbox_id, source_id, pubsub_token, created_at, updated_at)
            SELECT numbered.id, $4, 'idle-' || numbered.k, ($5::text[])[numbered.k], $3, $3
            FROM numbered
            """,
            account_id,
            n,
            now,
            inbox_id,
            tokens,
        )
    finally:
        await conn.close()
    return tokens


def visitor_identifier(pubsub_token: str) -> str:
    return json.dumps({"channel": "RoomChannel", "pubsub_token": pubsub_token})


def agent_identifier(agent: dict[str, Any]) -> str:
    return json.dumps(
        {
            "channel": "RoomChannel",
            "pubsub_token": agent["pubsub_token"],
            "account_id": agent["account_id"],
            "user_id": agent["id"],
        }
    )


# --- the socket reader (raw WebSocket over an asyncio protocol) ---------------------------

SEQ_MARK = b'"content":"fb '
CREATED = b'"event":"message.created"'


def client_frame(payload: bytes) -> bytes:
    """A masked text frame with a zero masking key (the payload needs no XOR)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class CableSocket(asyncio.Protocol):
    """One /cable socket: handshake, subscribe, then count or time the frames it reads."""

    def __init__(self, index: int, host: str, identifier: str, stats: ReaderStats) -> None:
        self.index = index
        self.host = host
        self.identifier = identifier
        self.stats = stats
        self.buf = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.confirmed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(  # type: ignore[union-attr]
            (
                f"GET /cable HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n"
                "\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.confirmed.done():
            self.confirmed.set_result(False)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.confirmed.set_result(False)
                self.transport.close()  # type: ignore[union-attr]
                return
            del buf[: end + 4]
            self.upgraded = True
            sub = json.dumps({"command": "subscribe", "identifier": self.identifier}).encode()
            self.transport.write(client_frame(sub))  # type: ignore[union-attr]
        i, n = 0, len(buf)
        stats = self.stats
        while n - i >= 2:
            ln = buf[i + 1] & 0x7F
            hl = 2
            if ln == 126:
                if n - i < 4:
                    break
                ln = int.from_bytes(buf[i + 2 : i + 4], "big")
                hl = 4
            elif ln == 127:
                if n - i < 10:
                    break
                ln = int.from_bytes(buf[i + 2 : i + 10], "big")
                hl = 10
            end = i + hl + ln
            if end > n:
                break
            start = i + hl
            i = end
            stats.frames += 1
            # Broadcasts start with {"identifier"; pings, welcome with {"type".
            if ln < 3 or buf[start + 2] != 0x69:  # 'i'
                continue
            if not self.confirmed.done():
                if buf.find(b"confirm_subscription", start, end) >= 0:
                    self.confirmed.set_result(True)
                    continue
                if buf.find(b"reject_subscription", start, end) >= 0:
                    self.confirmed.set_result(False)
                    continue
            stats.messages += 1
            if stats.timing:
                at = buf.find(SEQ_MARK, start, end)
                if at >= 0 and buf.find(CREATED, start, end) >= 0:
                    at += len(SEQ_MARK)
                    stop = buf.find(b" ", at, end)
                    stats.receipts.append((self.index, int(buf[at:stop]), time.monotonic()))
        if i:
            del buf[:i]


@dataclass
class ReaderStats:
    timing: bool
    frames: int = 0
    messages: int = 0
    closed: int = 0
    receipts: list[tuple[int, int, float]] = field(default_factory=list)


def quiet_gc() -> None:
    """The clients are the instrument: a collection in a reader (which keeps a receipt per
    frame) or in the loader would show up as server latency, so once set up they run with
    the cyclic collector off, as `timeit` does. Runs are bounded; reference counting frees
    the rest."""
    gc.collect()
    gc.freeze()
    gc.disable()


def reader_process(pipe: Pipe, targets: list[tuple[int, int, str]], timing: bool) -> None:
    """Entry point of a reader process: connect `targets` (index, port, identifier), report
    ready, then answer the parent's commands ("mark", "results") until "stop"."""
    _raise_nofile()
    import uvloop

    uvloop.run(_reader(pipe, targets, timing))


async def _reader(pipe: Pipe, targets: list[tuple[int, int, str]], timing: bool) -> None:
    loop = asyncio.get_running_loop()
    stats = ReaderStats(timing=timing)
    sockets: list[CableSocket] = []
    gate = asyncio.Semaphore(CONNECT_PARALLEL)

    async def connect(index: int, port: int, identifier: str) -> bool:
        async with gate:
            host = f"127.0.0.1:{port}"
            try:
                _, proto = await loop.create_connection(
                    lambda: CableSocket(index, host, identifier, stats), "127.0.0.1", port
                )
            except OSError:
                return False
            sockets.append(proto)
            try:
                return await asyncio.wait_for(proto.confirmed, 120)
            except TimeoutError:
                return False

    started = time.monotonic()
    ok = await asyncio.gather(*(connect(*t) for t in targets))
    quiet_gc()
    pipe.send(("ready", sum(ok), len(ok) - sum(ok), time.monotonic() - started))
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "mark":
            pipe.send((time.monotonic(), stats.frames, stats.messages, stats.closed))
        elif command == "results":
            pipe.send((stats.frames, stats.messages, stats.closed, stats.receipts))
            stats.receipts = []
        else:
            break
    for proto in sockets:
        if proto.transport is not None:
            proto.transport.abort()


class Readers:
    """Reader processes, each holding a share of the sockets."""

    def __init__(self, targets: list[tuple[int, int, str]], procs: int, timing: bool) -> None:
        ctx = get_context("spawn")
        self.pipes: list[Pipe] = []
        self.procs = []
        for k in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=reader_process, args=(child, targets[k::procs], timing), daemon=True
            )
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def ready(self) -> tuple[int, int, float]:
        ok = failed = 0
        took = 0.0
        for pipe in self.pipes:
            if not pipe.poll(SETUP_TIMEOUT):
                raise SystemExit("socket readers did not connect in time")
            _, o, f, t = pipe.recv()
            ok, failed, took = ok + o, failed + f, max(took, t)
        return ok, failed, took

    def ask(self, command: str) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send("stop")
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


# --- the loader (raw HTTP/1.1 keep-alive POSTs at a steady rate) --------------------------


def loader_process(
    pipe: Pipe,
    ports: list[int],
    website_token: str,
    tokens: list[str],
    rate: float,
    seconds: float,
    connections: int,
) -> None:
    import uvloop

    pipe.send(uvloop.run(_load(pipe, ports, website_token, tokens, rate, seconds, connections)))


class PostConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the loader, one request in flight at a time. It
    reads just the status line and Content-Length of each answer: with no task, stream or
    timer per request, the loader stays a small share of the machine it shares."""

    def __init__(self, port: int, on_answer: Callable[[PostConnection, int, str], None]) -> None:
        self.port = port
        self.on_answer = on_answer
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.k = -1  # the message in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        at = buf.find(b"\r\nContent-Length: ", 0, end)
        length = int(buf[at + 18 : buf.find(b"\r\n", at + 2)]) if at >= 0 else 0
        if len(buf) < end + 4 + length:
            return
        status = buf[9:12].decode()
        del buf[: end + 4 + length]
        self._answered(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._answered(type(exc).__name__ if exc else "ConnectionClosed")

    def _answered(self, status: str) -> None:
        """Also on a lost connection with nothing in flight (k = -1): the loader replaces it."""
        k, self.k = self.k, -1
        self.on_answer(self, k, status)


async def _load(
    pipe: Pipe,
    ports: list[int],
    website_token: str,
    tokens: list[str],
    rate: float,
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    """Message k is sent at start + k/rate by visitor k % len(tokens), to ports[k % 2]: an
    open-loop schedule, so a slow server shows up as lateness, not as a lower rate. A message
    whose server has no idle connection waits for one; its time starts when it is sent."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    path = f"{WIDGET}/messages?website_token={website_token}"
    sent: list[float] = [0.0] * total
    answered: list[float] = [-1.0] * total  # seconds from send to response, by k
    codes: list[str] = [""] * total  # the answer's status, by k
    statuses: Counter[str] = Counter()
    idle: dict[int, list[PostConnection]] = {p: [] for p in ports}
    waiting: dict[int, deque[int]] = {p: deque() for p in ports}
    in_flight = 0
    all_answered = loop.create_future()
    reconnects: set[asyncio.Task[None]] = set()

    def send(conn: PostConnection, k: int) -> None:
        nonlocal in_flight
        body = b'{"message":{"content":"fb %d x","echo_id":"fb-%d"}}' % (k, k)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{conn.port}\r\n"
            f"Content-Type: application/json\r\nX-Auth-Token: {tokens[k % len(tokens)]}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        conn.k = k
        in_flight += 1
        sent[k] = time.monotonic()
        conn.transport.write(head + body)  # type: ignore[union-attr]

    def on_answer(conn: PostConnection, k: int, status: str) -> None:
        nonlocal in_flight
        if k >= 0:
            in_flight -= 1
            statuses[status] += 1
            codes[k] = status
            if status.isdigit():
                answered[k] = time.monotonic() - sent[k]
        if conn.transport is None:
            if conn in idle[conn.port]:
                idle[conn.port].remove(conn)
            task = loop.create_task(connect(conn.port))
            reconnects.add(task)
            task.add_done_callback(reconnects.discard)
        elif waiting[conn.port]:
            send(conn, waiting[conn.port].popleft())
        else:
            idle[conn.port].append(conn)
        if in_flight == 0 and scheduled and not any(waiting.values()) and not all_answered.done():
            all_answered.set_result(None)

    async def connect(port: int) -> None:
        _, conn = await loop.create_connection(
            lambda: PostConnection(port, on_answer), "127.0.0.1", port
        )
        if waiting[port]:
            send(conn, waiting[port].popleft())
        else:
            idle[port].append(conn)

    for port in ports:
        for _ in range(connections):
            await connect(port)
    quiet_gc()
    late = 0
    scheduled = False  # every message sent or waiting for a connection
    pipe.send("loader ready")
    start = time.monotonic() + 0.2
    for k in range(total):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late += 1
        port = ports[k % len(ports)]
        if idle[port]:
            send(idle[port].pop(), k)
        else:
            waiting[port].append(k)
    scheduled = True
    if in_flight or any(waiting.values()):
        try:
            await asyncio.wait_for(all_answered, 60)
        except TimeoutError:
            statuses["TimeoutError"] += in_flight + sum(len(w) for w in waiting.values())
    return {
        "sent": sent,
        "answered": answered,
        "codes": codes,
        "statuses": dict(statuses),
        "late": late,
        "wall": time.monotonic() - start,
    }


def run_loader(
    ports: list[int], world: World, tokens: list[str], rate: float, seconds: float, conns: int
) -> tuple[Any, Any]:
    """Start the loader process; returns (process, pipe) once it is connected."""
    ctx = get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=loader_process,
        args=(child, ports, world.website_token, tokens, rate, seconds, conns),
        daemon=True,
    )
    proc.start()
    if not parent.poll(60):
        raise SystemExit("loader did not start")
    parent.recv()
    return proc, parent


def wait_quiet(readers: Readers, quiet: float, limit: float = 60.0) -> None:
    """Wait until the sockets received no broadcast for `quiet` seconds (at most `limit`).
    Pings do not count: the hub pings some socket every tick."""
    deadline = time.monotonic() + limit
    last = -1
    while time.monotonic() < deadline:
        now = sum(m[2] for m in readers.ask("mark"))
        if now == last:
            return
        last = now
        time.sleep(quiet)


# --- reporting ----------------------------------------------------------------------------


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


class CpuMeter:
    def __init__(self, stack: Stack) -> None:
        self.pids = {name: p.pid for name, p in stack.procs.items()}
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.t0 = time.monotonic()

    def percent(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        return {
            name: round(100 * (cpu_seconds(pid) - self.start[name]) / wall, 1)
            for name, pid in self.pids.items()
        }


# --- modes --------------------------------------------------------------------------------


def _lost_examples(
    seen: set[tuple[int, int]], n_visitors: int, n_agents: int, warm: int, n_sent: int
) -> list[tuple[int, int]]:
    """Up to 10 (socket index, message seq) pairs expected but never received: which socket
    and which message tell a closed socket from a message no socket got."""
    lost: list[tuple[int, int]] = []
    for seq in range(warm, n_sent):
        for index in (seq % n_visitors, *range(n_visitors, n_visitors + n_agents)):
            if (index, seq) not in seen:
                lost.append((index, seq))
                if len(lost) == 10:
                    return lost
    return lost


def mode_latency(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    n_agents = min(args.agents, args.agent_sockets)
    n_visitors = args.sockets - args.agent_sockets
    world = make_world(stack, agents=n_agents, visitors=n_visitors, open_conversations=True)
    ports = [stack.ports["server1"], stack.ports["server2"]]
    # Sockets 0..V-1 are the visitors (visitor v on server v % 2), then the agent sockets.
    targets = [
        (v, ports[v % 2], visitor_identifier(world.visitors[v][1])) for v in range(n_visitors)
    ]
    targets += [
        (n_visitors + a, ports[a % 2], agent_identifier(world.agents[a % n_agents]))
        for a in range(args.agent_sockets)
    ]
    readers = Readers(targets, args.reader_procs, timing=True)
    try:
        ok, failed, took = readers.ready()
        print(f"{ok} sockets subscribed ({failed} failed) in {took:.1f} s", file=sys.stderr)
        time.sleep(1.0)
        readers.ask("results")  # forget frames from the setup
        tokens = [t for t, _ in world.visitors]
        # One schedule: the warm-up's messages, then the measured ones, with no pause.
        loader, pipe = run_loader(
            ports, world, tokens, args.rate, args.warmup + args.seconds, args.connections
        )
        if args.warmup > 0:
            time.sleep(args.warmup)
        cpu = CpuMeter(stack)
        if not pipe.poll(args.seconds + 120):
            raise SystemExit("loader did not finish")
        load = pipe.recv()
        loader.join(timeout=10)
        wait_quiet(readers, args.drain)
        cpu_pct = cpu.percent()
        results = readers.ask("results")
    finally:
        readers.stop()
    sent: list[float] = load["sent"]
    warm = round(args.rate * args.warmup)  # messages 0..warm-1 are not counted
    total = len(sent) - warm
    expected = total * (1 + args.agent_sockets)
    latencies: list[float] = []
    seen: set[tuple[int, int]] = set()
    duplicates = unexpected = 0
    # Frames over the target by the second their message was posted in: tells a tail spread
    # over the whole run from a moment that held everything up.
    slow_by_second: Counter[int] = Counter()
    first = sent[warm] if total > 0 else 0.0
    for _, _, _, receipts in results:
        for index, seq, at in receipts:
            if seq >= len(sent) or sent[seq] == 0.0:
                unexpected += 1
                continue
            if index < n_visitors and index != seq % n_visitors:
                unexpected += 1
                continue
            if seq < warm:
                continue
            if (index, seq) in seen:
                duplicates += 1
                continue
            seen.add((index, seq))
            latency = (at - sent[seq]) * 1000
            latencies.append(latency)
            if latency > SLOW_MS:
                slow_by_second[int(sent[seq] - first)] += 1
    if args.timeline:
        write_timeline(args.timeline, sent, load["answered"], results, warm, n_visitors)
    latencies.sort()
    answered = sorted(t for t in load["answered"][warm:] if t >= 0)
    return {
        "mode": "latency",
        "sockets": ok,
        "failed_sockets": failed,
        "visitor_sockets": n_visitors,
        "agent_sockets": args.agent_sockets,
        "rate_target": args.rate,
        "warmup_messages_not_counted": warm,
        "messages_posted": total,
        "post_rate": round((total + warm) / load["wall"], 1),
        "post_statuses": load["statuses"],
        "posts_late_over_5ms": load["late"],
        "post_response_ms": {
            p: round(pct(answered, q) * 1000, 2)
            for p, q in (("p50", 50), ("p99", 99), ("max", 100))
        },
        "sockets_closed_by_server": sum(r[2] for r in results),
        "frames_expected": expected,
        "frames_received": len(seen),
        "lost": expected - len(seen),
        "lost_examples": _lost_examples(seen, n_visitors, args.agent_sockets, warm, len(sent)),
        "duplicates": duplicates,
        "unexpected": unexpected,
        "latency_ms": {
            "p50": round(pct(latencies, 50), 2),
            "p90": round(pct(latencies, 90), 2),
            "p99": round(pct(latencies, 99), 2),
            "max": round(latencies[-1], 2) if latencies else None,
        },
        f"frames_over_{SLOW_MS}ms": sum(slow_by_second.values()),
        f"frames_over_{SLOW_MS}ms_by_second": dict(sorted(slow_by_second.items())),
        "cpu_percent": cpu_pct,
    }


def write_timeline(
    path: str,
    sent: list[float],
    answered: list[float],
    results: list[Any],
    warm: int,
    n_visitors: int,
) -> None:
    """One JSON line per message, warm-up included: when it was sent (time.monotonic(), the
    clock every process on the machine shares, so other probes can be lined up with it), how
    long its POST took, and its slowest frame on a visitor and on an agent socket (ms). What
    the percentiles cannot tell: whether a tail is spread over the run or one stretch, and
    whether the POST was already late."""
    # seq -> [slowest visitor frame, slowest agent frame], ms; None: no such frame arrived.
    worst: dict[int, list[float | None]] = {}
    for _, _, _, receipts in results:
        for index, seq, at in receipts:
            if seq >= len(sent) or sent[seq] == 0.0:
                continue
            slot = worst.setdefault(seq, [None, None])
            side = 0 if index < n_visitors else 1
            ms = round((at - sent[seq]) * 1000, 3)
            slot[side] = max(slot[side] or 0.0, ms)
    with open(path, "w") as out:
        for seq, at in enumerate(sent):
            visitor, agent = worst.get(seq, (None, None))
            line = {
                "seq": seq,
                "warmup": seq < warm,
                "sent": at,
                "post_ms": round(answered[seq] * 1000, 3) if answered[seq] >= 0 else None,
                "visitor_ms": visitor,
                "agent_ms": agent,
            }
            out.write(json.dumps(line) + "\n")


def mode_throughput(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    world = make_world(stack, agents=args.agents, visitors=args.posters, open_conversations=True)
    port1 = stack.ports["server1"]
    targets = [
        (i, port1, agent_identifier(world.agents[i % args.agents])) for i in range(args.sockets)
    ]
    readers = Readers(targets, args.reader_procs, timing=False)
    try:
        ok, failed, took = readers.ready()
        print(f"{ok} sockets subscribed ({failed} failed) in {took:.1f} s", file=sys.stderr)
        time.sleep(1.0)
        tokens = [t for t, _ in world.visitors]
        loader, pipe = run_loader(
            [stack.ports["server2"]], world, tokens, args.rate, args.seconds, args.connections
        )
        # Measure the middle of the run: skip the first second, stop before the last.
        time.sleep(1.0)
        marks0 = readers.ask("mark")
        cpu = CpuMeter(stack)
        time.sleep(max(1.0, args.seconds - 2.0))
        marks1 = readers.ask("mark")
        cpu_pct = cpu.percent()
        if not pipe.poll(args.seconds + 120):
            raise SystemExit("loader did not finish")
        load = pipe.recv()
        loader.join(timeout=10)
        wait_quiet(readers, args.drain)
        final = readers.ask("results")
    finally:
        readers.stop()
    wall = max(m[0] for m in marks1) - min(m[0] for m in marks0)
    window_messages = sum(m[2] for m in marks1) - sum(m[2] for m in marks0)
    total = len(load["sent"])
    received = sum(r[1] for r in final)
    return {
        "mode": "throughput",
        "sockets": ok,
        "failed_sockets": failed,
        "sockets_closed_by_server": sum(r[2] for r in final),
        "rate_target": args.rate,
        "messages_posted": total,
        "post_statuses": load["statuses"],
        "frames_offered_per_s": args.rate * ok,
        "frames_per_s_server1": round(window_messages / wall),
        "frames_per_server1_cpu_second": round(
            window_messages / wall / max(cpu_pct["server1"] / 100, 0.01)
        ),
        "measured_window_s": round(wall, 1),
        "broadcast_frames_total": received,
        "broadcast_frames_expected": total * ok,
        "cpu_percent_in_window": cpu_pct,
    }


def mode_idle(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    world = make_world(stack, agents=1, visitors=args.sockets, open_conversations=False, bulk=True)
    port1 = stack.ports["server1"]
    pid = stack.procs["server1"].pid
    # Warm-up, not measured: a few sockets connect, subscribe and leave, so code paths and
    # pools the first sockets touch are in place before the "before" figure.
    warm = [(i, port1, visitor_identifier(world.visitors[i][1])) for i in range(200)]
    readers = Readers(warm, 1, timing=False)
    readers.ready()
    readers.stop()
    time.sleep(2.0)
    before = rss_kb(pid)
    targets = [(i, port1, visitor_identifier(world.visitors[i][1])) for i in range(args.sockets)]
    readers = Readers(targets, args.reader_procs, timing=False)
    try:
        ok, failed, took = readers.ready()
        print(f"{ok} sockets subscribed ({failed} failed) in {took:.1f} s", file=sys.stderr)
        time.sleep(args.idle_wait)  # a few ping rounds
        after = rss_kb(pid)
        alive = sum(m[3] for m in readers.ask("mark"))
    finally:
        readers.stop()
    return {
        "mode": "idle",
        "sockets": ok,
        "failed_sockets": failed,
        "sockets_closed_meanwhile": alive,
        "connect_seconds": round(took, 1),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_connection": round((after - before) / max(ok, 1), 2),
    }


def mode_jitter(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jitter

    return jitter.run(stack, args, make_world, visitor_identifier, run_loader, CpuMeter)


MODES: dict[str, Callable[[Stack, argparse.Namespace], dict[str, Any]]] = {
    "latency": mode_latency,
    "throughput": mode_throughput,
    "idle": mode_idle,
    "jitter": mode_jitter,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--sockets", type=int, default=None)
    parser.add_argument("--agent-sockets", type=int, default=10, help="latency mode")
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--posters", type=int, default=200, help="throughput: visitors posting")
    parser.add_argument("--rate", type=float, default=None, help="messages/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32, help="HTTP keep-alive per server")
    parser.add_argument("--reader-procs", type=int, default=1)
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="latency: seconds posted at --rate before the measured --seconds (not counted)",
    )
    parser.add_argument("--timeline", help="latency: write one JSON line per message to this file")
    parser.add_argument("--drain", type=float, default=2.0, help="wait for stragglers (s)")
    parser.add_argument("--idle-wait", type=float, default=10.0, help="idle: seconds held")
    parser.add_argument("--tabs", type=int, default=10, help="jitter: sockets per visitor")
    parser.add_argument(
        "--drop-every", type=float, default=15.0, help="jitter: mean seconds between drops"
    )
    parser.add_argument("--offline", type=float, default=2.0, help="jitter: mean seconds away")
    parser.add_argument(
        "--protocol",
        choices=("plain", "ext"),
        default="plain",
        help="jitter: plain ActionCable (catch up with after=) or the extended protocol "
        "(restore the session, resume by stream position)",
    )
    parser.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin DSN"
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the servers")
    parser.add_argument("--keep-logs", help="copy the processes' logs to this directory")
    args = parser.parse_args()
    defaults = {
        "latency": (2000, 500.0),
        "throughput": (2000, 50.0),
        "idle": (10000, 0.0),
        "jitter": (2000, 100.0),
    }
    sockets, rate = defaults[args.mode]
    args.sockets = args.sockets or sockets
    args.rate = args.rate or rate
    args.seconds = min(args.seconds, 300.0)
    if args.sockets > 15000:
        raise SystemExit("--sockets is capped at 15000 (file descriptors, ephemeral ports)")
    _raise_nofile()
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is not on PATH")
    extra = dict(item.split("=", 1) for item in args.env)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        stack = Stack(Path(tmp), args.pg)
        try:
            stack.start(extra)
            result = MODES[args.mode](stack, args)
        finally:
            stack.stop()
            if args.keep_logs:
                shutil.copytree(tmp, args.keep_logs, dirs_exist_ok=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
