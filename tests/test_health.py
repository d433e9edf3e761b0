"""GET /livez and /readyz (issue 16 item 1): what each check reports, a failing check named
in a 503, the drain on SIGTERM, and the worker's own port. Real databases, a real
redis-server, real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.settings import Settings
from tests.cable import SUBPROTOCOLS, visitor_identifier
from tests.conftest import PG_DSN, make_settings, temp_pg_database
from tests.procs import RedisServer, base_env, free_port, web_process, worker_process


async def until(pred: Any, timeout: float = 10.0) -> Any:
    """Poll an async predicate until it returns something truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await pred()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def readyz(client: Any, url: str = "/readyz") -> tuple[int, dict[str, Any]]:
    resp = await client.get(url)
    return resp.status, await resp.json()


async def test_live_and_ready_on_the_embedded_default(client: TestClient) -> None:
    resp = await client.get("/livez")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    assert await readyz(client) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "bus": "ok"}},
    )


async def test_redis_down_is_named_and_recovers(
    db_url: str, tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.health")
    redis = RedisServer(tmp_path / "redis").start()
    try:
        settings = make_settings(db_url, tmp_path, redis_url=redis.url, health_timeout=0.5)
        client = await aiohttp_client(create_app(settings))
        assert (await readyz(client))[0] == 200
        redis.stop()

        async def unavailable() -> Any:
            status, body = await readyz(client)
            return body if status == 503 else None

        body = await until(unavailable)
        assert body["status"] == "unavailable" and body["failed"] == ["bus"]
        assert body["checks"] == {"database": "ok", "bus": "failed"}
        # Why is for the operator's log, not for whoever reaches the probe.
        assert "redis" not in json.dumps(body).lower()
        reasons = [
            r.getMessage() for r in caplog.records if "readiness check bus" in r.getMessage()
        ]
        assert len(reasons) == 1 and "fails" in reasons[0]
        assert (await client.get("/livez")).status == 200  # alive, only not ready
        redis.start()

        async def ready() -> bool:
            return (await readyz(client))[0] == 200

        await until(ready, timeout=15)
        assert any("readiness check bus passes again" in r.getMessage() for r in caplog.records)
    finally:
        redis.stop()


async def test_database_gone_is_named(tmp_path: Path, aiohttp_client: Any) -> None:
    async with temp_pg_database() as url:
        client = await aiohttp_client(create_app(make_settings(url, tmp_path)))
        assert (await readyz(client))[0] == 200
        admin = await asyncpg.connect(PG_DSN)
        try:  # the database goes away under the running app
            name = url.rsplit("/", 1)[1]
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        status, body = await readyz(client)
        assert status == 503 and body["failed"] == ["database"], body
        assert body["checks"]["bus"] == "ok"
        await client.close()


def test_health_settings_are_validated() -> None:
    base = {"SECRET_KEY_BASE": "x" * 40}
    for name, bad in (
        ("SHUTDOWN_DRAIN", "-1"),
        ("SHUTDOWN_DRAIN", "301"),
        ("SHUTDOWN_DRAIN", "nan"),
        ("HEALTH_TIMEOUT", "0"),
        ("WORKER_HEALTH_PORT", "70000"),
        ("WORKER_HEALTH_PORT", "http"),
    ):
        with pytest.raises(SystemExit, match=name):
            Settings.from_env({**base, name: bad})
    ok = Settings.from_env({**base, "SHUTDOWN_DRAIN": "2.5", "WORKER_HEALTH_PORT": "9100"})
    assert (ok.shutdown_drain, ok.worker_health_port) == (2.5, 9100)
    assert Settings.from_env(base).worker_health_port is None


async def test_sigterm_turns_readyz_503_first_then_closes_sockets(tmp_path: Path) -> None:
    env = base_env(
        f"sqlite:///{tmp_path / 'chat.db'}", tmp_path / "data", SEED_DEMO="1", SHUTDOWN_DRAIN="2"
    )
    web = web_process(env, tmp_path / "web.log").start()
    try:
        token = next(
            line.split("website_token=")[1].split(";")[0]
            for line in web.output().splitlines()
            if "website_token=" in line
        )
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"{web.url}/api/v1/widget/config?website_token={token}")
            pubsub = (await resp.json())["contact"]["pubsub_token"]
            ws = await http.ws_connect(f"{web.url}/cable", protocols=SUBPROTOCOLS)
            frames: list[dict[str, Any]] = []

            async def read() -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        frames.append(json.loads(msg.data))

            reader = asyncio.ensure_future(read())
            await ws.send_str(
                json.dumps({"command": "subscribe", "identifier": visitor_identifier(pubsub)})
            )

            async def confirmed() -> bool:
                return any(f.get("type") == "confirm_subscription" for f in frames)

            await until(confirmed)
            assert (await readyz(http, f"{web.url}/readyz"))[0] == 200

            web.signal(signal.SIGTERM)

            async def draining() -> Any:
                status, body = await readyz(http, f"{web.url}/readyz")
                return body if status == 503 else None

            body = await until(draining)
            assert body["failed"] == ["shutting_down"], body
            # Still serving while it drains: the socket is open and requests are answered.
            assert not any(f.get("type") == "disconnect" for f in frames)
            resp = await http.post(f"{web.url}/api/v1/widget/config?website_token={token}")
            assert resp.status == 200

            async def told_to_reconnect() -> bool:
                return any(
                    f.get("type") == "disconnect" and f.get("reason") == "server_restart"
                    for f in frames
                )

            await until(told_to_reconnect)
            await asyncio.wait_for(reader, 10)
        assert await asyncio.to_thread(web.wait, 10) == 0
        assert "draining: /readyz answers 503" in web.output()
    finally:
        web.stop()


async def test_worker_serves_its_own_health(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    port = free_port()
    env = base_env(
        f"sqlite:///{tmp_path / 'chat.db'}",
        tmp_path / "data",
        REDIS_URL=redis.url,
        WORKER_HEALTH_PORT=str(port),
    )
    worker = worker_process(env, tmp_path / "worker.log").start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}"
            assert (await (await http.get(f"{url}/livez")).json()) == {"status": "ok"}
            status, body = await readyz(http, f"{url}/readyz")
            assert (status, body["checks"]) == (200, {"database": "ok", "bus": "ok"})
            redis.stop()

            async def unavailable() -> Any:
                status, body = await readyz(http, f"{url}/readyz")
                return body if status == 503 else None

            assert (await until(unavailable))["failed"] == ["bus"]
    finally:
        worker.stop()
        redis.stop()
