"""Slow or idle clients cannot hold descriptors (issue 13, section 3): deadlines for the request
head, the body, an idle keep-alive and an unsubscribed /cable socket; a cap on connections per
client address; a descriptor ceiling that keeps the database's descriptors free.

Real sockets to 127.0.0.1. What aiohttp's TestServer gets (body and keep-alive deadlines, the
/cable deadline, the per-forwarded-address cap) runs in process on both databases; what lives
at accept (head deadline, per-peer cap, descriptor ceiling) runs against `python -m server`."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.services import SERVICES
from server.settings import Settings
from tests.cable import CableClient, visitor_identifier
from tests.conftest import World, build_world, make_settings, temp_pg_database
from tests.procs import Process, RedisServer, base_env, tokens_from_log, web_process

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open(port: int, source: str = "127.0.0.1") -> Streams:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _read_until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after `within` s."""
    data = b""
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"connection still open after {within}s; got {data[:200]!r}")
        try:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


async def _still_open(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        chunk = await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False
    return bool(chunk)


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.2) -> None:
    """One byte of `data` every `every` s (bounded by len(data)), until the server hangs up."""
    for i in range(len(data)):
        if writer.is_closing():
            return
        writer.write(data[i : i + 1])
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


def _get(path: str = "/api/v1/widget/nothing-here", keep_alive: bool = True) -> bytes:
    conn = b"keep-alive" if keep_alive else b"close"
    return b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: %s\r\n\r\n" % (path.encode(), conn)


async def _status(reader: asyncio.StreamReader, within: float = 5.0) -> int:
    """The status of one whole response (head and Content-Length body read)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    assert head.startswith(b"HTTP/1.1 "), head
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await asyncio.wait_for(reader.readexactly(length), within)
    return int(head.split()[1])


def _close(*streams: Streams) -> None:
    for _, writer in streams:
        writer.close()


# --- in process, on both databases ---------------------------------------------------------


@pytest.fixture
async def tight(db_url: str, tmp_path: Path, aiohttp_client: Any) -> TestClient:
    """A server with deadlines of a second, and a cap of 2 per forwarded address."""
    settings = make_settings(
        db_url,
        tmp_path,
        body_timeout=1.0,
        keepalive_timeout=1.0,
        cable_subscribe_timeout=1.0,
        trusted_proxies=Settings.from_env(
            {"SECRET_KEY_BASE": "x" * 40, "TRUSTED_PROXIES": "127.0.0.1"}
        ).trusted_proxies,
        max_connections_per_address=2,
    )
    return await aiohttp_client(create_app(settings))


async def test_body_trickle_gets_408_and_is_closed(tight: TestClient) -> None:
    reader, writer = await _open(tight.port)  # type: ignore[arg-type]
    writer.write(
        b"POST /api/v1/widget/config?website_token=x HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    )
    trickler = asyncio.create_task(_trickle(writer, b'"a":"' + b"b" * 200))
    try:
        started = time.monotonic()
        data = await _read_until_closed(reader, within=6)
        took = time.monotonic() - started
    finally:
        trickler.cancel()
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"request body not received within 1 s" in data
    assert took >= 0.9, took  # the deadline, not a refusal at once


async def test_whole_body_is_not_held_to_the_body_deadline(tight: TestClient) -> None:
    """A body sent at once never meets the deadline (it costs no timer at all)."""
    resp = await tight.post("/api/v1/widget/config?website_token=nope", json={"a": "b" * 5000})
    assert resp.status == 404


async def test_idle_keepalive_connection_is_closed(tight: TestClient) -> None:
    reader, writer = await _open(tight.port)  # type: ignore[arg-type]
    writer.write(_get())
    assert await _status(reader) == 404
    started = time.monotonic()
    await _read_until_closed(reader, within=5)
    assert time.monotonic() - started >= 0.5
    writer.close()


async def test_cable_socket_that_never_subscribes_is_closed(tight: TestClient) -> None:
    world = await build_world(tight.app[SERVICES].db)
    visitor = await _visitor(tight, world)
    idle = await CableClient.connect(tight)
    active = await CableClient.connect(tight)
    await active.subscribe(visitor_identifier(visitor["pubsub_token"]))
    frame = await idle.wait_for(lambda f: f.get("type") == "disconnect", timeout=5)
    assert frame == {"type": "disconnect", "reason": "no_subscription", "reconnect": True}
    await asyncio.wait_for(idle.closed.wait(), 5)
    assert tight.app[SERVICES].hub.unsubscribed_closed == 1  # type: ignore[union-attr]
    # The subscribed socket outlived the deadline and still gets its events.
    await asyncio.sleep(0.2)
    assert not active.closed.is_set()
    resp = await tight.post(
        f"/api/v1/widget/messages?website_token={world.inbox['website_token']}",
        json={"message": {"content": "still here"}},
        headers={"X-Auth-Token": visitor["auth_token"]},
    )
    assert resp.status == 200
    data = await active.wait_event("message.created")
    assert data["content"] == "still here"
    await active.close()


async def _visitor(client: TestClient, world: World, **kw: Any) -> dict[str, str]:
    resp = await client.post(
        f"/api/v1/widget/config?website_token={world.inbox['website_token']}", **kw
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return {
        "auth_token": body["website_channel_config"]["auth_token"],
        "pubsub_token": body["contact"]["pubsub_token"],
    }


async def test_cap_per_forwarded_address(tight: TestClient) -> None:
    """Through a trusted proxy (127.0.0.1 here) requests and /cable sockets count against the
    forwarded address while they run: a third socket for one client is a 429, another client
    still gets in, and a closed socket makes room."""
    world = await build_world(tight.app[SERVICES].db)
    one = {"X-Forwarded-For": "198.51.100.7"}
    visitor = await _visitor(tight, world, headers=one)
    ident = visitor_identifier(visitor["pubsub_token"])
    sockets = []
    for _ in range(2):
        ws = await tight.ws_connect("/cable", protocols=("actioncable-v1-json",), headers=one)
        sockets.append(ws)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await tight.ws_connect("/cable", protocols=("actioncable-v1-json",), headers=one)
    assert refused.value.status == 429
    resp = await tight.get("/api/v1/widget/nothing", headers=one)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "10"
    assert await resp.json() == {"error": "too many connections from your address"}
    assert tight.app[SERVICES].connections.refused_forwarded == 2  # type: ignore[union-attr]
    other = await tight.ws_connect(
        "/cable", protocols=("actioncable-v1-json",), headers={"X-Forwarded-For": "203.0.113.5"}
    )
    await other.close()
    await sockets.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the closed socket's handler ends (and releases its count) just after
        resp = await tight.get("/api/v1/widget/nothing", headers=one)
        if resp.status == 404 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert resp.status == 404
    client = CableClient(
        await tight.ws_connect("/cable", protocols=("actioncable-v1-json",), headers=one)
    )
    await client.subscribe(ident)
    await client.close()
    for ws in sockets:
        await ws.close()


def test_settings_are_validated() -> None:
    base = {"SECRET_KEY_BASE": "x" * 40}
    ok = Settings.from_env(base)
    assert (ok.header_timeout, ok.body_timeout, ok.keepalive_timeout) == (10.0, 30.0, 15.0)
    assert (ok.cable_subscribe_timeout, ok.max_connections_per_address) == (10.0, 256)
    assert ok.fd_reserve == 128
    for name in ("HEADER_TIMEOUT", "BODY_TIMEOUT", "KEEPALIVE_TIMEOUT", "CABLE_SUBSCRIBE_TIMEOUT"):
        assert getattr(Settings.from_env({**base, name: "2.5"}), name.lower()) == 2.5
        for bad in ("0", "-1", "nan", "inf", "7200"):
            with pytest.raises(SystemExit, match=name):
                Settings.from_env({**base, name: bad})
        with pytest.raises(SystemExit, match=name):
            Settings.from_env({**base, name: "soon"})
    assert (
        Settings.from_env(
            {**base, "MAX_CONNECTIONS_PER_ADDRESS": "5000"}
        ).max_connections_per_address
        == 5000
    )
    with pytest.raises(SystemExit, match="MAX_CONNECTIONS_PER_ADDRESS"):
        Settings.from_env({**base, "MAX_CONNECTIONS_PER_ADDRESS": "0"})
    with pytest.raises(SystemExit, match="FD_RESERVE"):
        Settings.from_env({**base, "FD_RESERVE": "4"})
    with pytest.raises(SystemExit, match="FD_RESERVE"):
        Settings.from_env({**base, "FD_RESERVE": "lots"})


# --- a real `python -m server` ---------------------------------------------------------------


@contextlib.contextmanager
def _server(
    tmp_path: Path, nofile: int | None = None, db: str | None = None, **env: Any
) -> Iterator[Process]:
    """`python -m server` (SQLite unless `db`) with demo data, optionally under
    RLIMIT_NOFILE `nofile`."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    db = db or f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    proc = web_process(
        base_env(db, tmp_path / "data", SEED_DEMO="1", **env), tmp_path / "server.log", limit
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_idle_and_trickled_heads_are_closed(tmp_path: Path) -> None:
    with _server(tmp_path, HEADER_TIMEOUT="1", KEEPALIVE_TIMEOUT="30") as proc:
        idle = await _open(proc.port)
        trickled = await _open(proc.port)
        served = await _open(proc.port)
        trickler = asyncio.create_task(
            _trickle(trickled[1], b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100)
        )
        served[1].write(_get())
        assert await _status(served[0]) == 404
        started = time.monotonic()
        try:
            assert await _read_until_closed(idle[0], within=4) == b""
            assert await _read_until_closed(trickled[0], within=4) == b""
        finally:
            trickler.cancel()
        assert time.monotonic() - started >= 0.5
        # A connection that sent its request is the keep-alive timer's business, not the
        # head deadline's (this also pins aiohttp's per-connection request count we read).
        assert await _still_open(served[0], 1.0)
        served[1].write(_get(keep_alive=False))
        assert await _status(served[0]) == 404
        _close(idle, trickled, served)


async def test_cap_per_address_refuses_the_257th_connection(tmp_path: Path) -> None:
    with _server(tmp_path, HEADER_TIMEOUT="60") as proc:
        held = [await _open(proc.port) for _ in range(256)]
        try:
            refused = await _open(proc.port)
            data = await _read_until_closed(refused[0], within=5)
            assert data.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), data
            assert b"Retry-After: 10\r\n" in data
            assert data.endswith(b'{"error":"too many connections from your address"}')
            # Another address still gets in.
            other = await _open(proc.port, source="127.0.0.2")
            other[1].write(_get(keep_alive=False))
            assert await _status(other[0]) == 404
            _close(refused, other)
            # One of the 256 leaves: the address may connect again, once the server has seen
            # that close. Until then a try is refused: a 429, or a reset when the refusal
            # closes the connection with our request unread (the server never reads a
            # refused connection), so either means "not yet".
            _close(held.pop())
            deadline = time.monotonic() + 5
            status = 0
            while status != 404 and time.monotonic() < deadline:
                again = await _open(proc.port)
                again[1].write(_get(keep_alive=False))
                try:
                    status = await _status(again[0])
                except (ConnectionError, asyncio.IncompleteReadError):
                    status = 0
                _close(again)
                if status != 404:
                    await asyncio.sleep(0.05)
            assert status == 404
            assert "MAX_CONNECTIONS_PER_ADDRESS" in proc.output()
        finally:
            _close(*held)


async def test_trusted_proxy_is_not_capped_at_accept(tmp_path: Path) -> None:
    """A proxy carries many clients' connections: its own count is not capped (its clients
    are, per request, through X-Forwarded-For); any other address still is."""
    env = {"HEADER_TIMEOUT": "60", "MAX_CONNECTIONS_PER_ADDRESS": "3"}
    with _server(tmp_path, TRUSTED_PROXIES="127.0.0.1", **env) as proc:
        proxied = [await _open(proc.port) for _ in range(5)]
        direct = [await _open(proc.port, source="127.0.0.2") for _ in range(4)]
        try:
            for _, writer in proxied:
                writer.write(_get(keep_alive=False))
            for reader, _ in proxied:
                assert await _status(reader) == 404
            assert (await _read_until_closed(direct[3][0], within=5)).startswith(b"HTTP/1.1 429 ")
        finally:
            _close(*proxied, *direct)


async def _visitor_writes(url: str, website_token: str, session: aiohttp.ClientSession) -> None:
    """A real visitor: /config, then messages, each answered 200."""
    resp = await session.post(f"{url}/api/v1/widget/config?website_token={website_token}")
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["website_channel_config"]["auth_token"]
    for i in range(20):
        resp = await session.post(
            f"{url}/api/v1/widget/messages?website_token={website_token}",
            json={"message": {"content": f"hello {i}"}},
            headers={"X-Auth-Token": token},
        )
        assert resp.status == 200, await resp.text()
        await asyncio.sleep(0.05)  # spread over several WAL checkpoints (every 0.5 s)


@contextlib.asynccontextmanager
async def _flood(port: int, count: int) -> AsyncIterator[list[Streams]]:
    """`count` idle connections from 127.0.0.1 (those the server refuses are closed by it)."""
    held: list[Streams] = []
    try:
        for _ in range(count):
            held.append(await _open(port))
        yield held
    finally:
        _close(*held)


def _database_errors(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if "unable to open database file" in line
        or "checkpoint failed" in line
        or "Too many open files" in line
        or "Traceback" in line
    ]


async def test_flood_from_one_address_under_600_descriptors_spares_visitors(
    tmp_path: Path,
) -> None:
    """The issue's attack: 700 idle connections from one address to a server limited to 600
    descriptors. A visitor from another address still gets /config and writes messages."""
    with _server(tmp_path, nofile=600, HEADER_TIMEOUT="60") as proc:
        website_token = tokens_from_log(proc.output())["website_token"]
        async with _flood(proc.port, 700):
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                await asyncio.wait_for(_visitor_writes(proc.url, website_token, session), 30)
        assert not _database_errors(proc.output()), proc.output()[-3000:]


@pytest.fixture(params=["sqlite", "scaled"])
async def shape(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The embedded default, or PostgreSQL + Redis (its pools must find descriptors too)."""
    if request.param == "sqlite":
        yield {}
        return
    redis = RedisServer(tmp_path / "redis").start()
    try:
        async with temp_pg_database() as url:
            yield {"db": url, "REDIS_URL": redis.url, "RUN_RELAY": "1"}
    finally:
        redis.stop()


async def test_flood_past_the_descriptor_limit_spares_the_database(
    tmp_path: Path, shape: dict[str, str]
) -> None:
    """With the per-address cap out of the way, 700 connections meet the descriptor ceiling:
    the ones past it are closed at once, the log says what to do, and the database keeps its
    descriptors (a visitor already connected keeps writing; SQLite's WAL checkpoint, or the
    PostgreSQL and Redis pools, keep working). Once the flood is gone, new visitors get in."""
    with _server(
        tmp_path, nofile=400, HEADER_TIMEOUT="60", MAX_CONNECTIONS_PER_ADDRESS="100000", **shape
    ) as proc:
        website_token = tokens_from_log(proc.output())["website_token"]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            resp = await session.get(f"{proc.url}/api/v1/widget/nothing")  # connected first
            assert resp.status == 404
            async with _flood(proc.port, 700) as held:
                for reader, _ in held[-100:]:  # the last ones were past the ceiling
                    assert await _read_until_closed(reader, within=5) == b""
                await asyncio.wait_for(_visitor_writes(proc.url, website_token, session), 30)
        assert "raise `ulimit -n`" in proc.output()
        assert not _database_errors(proc.output()), proc.output()[-3000:]
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = time.monotonic() + 10
            while True:  # the flood's descriptors are released as the server sees them close
                try:
                    await _visitor_writes(proc.url, website_token, session)
                    break
                except (AssertionError, aiohttp.ClientError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)


def test_a_limit_that_leaves_no_room_stops_the_server_at_start(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    proc = web_process(base_env(db, tmp_path / "data"), tmp_path / "server.log", limit)
    with pytest.raises(RuntimeError, match="exited early") as exited:
        proc.start()
    proc.stop()
    assert "RLIMIT_NOFILE is 100" in str(exited.value)
    assert "raise `ulimit -n`" in str(exited.value)
