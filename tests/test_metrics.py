"""GET /metrics (issue 16 item 2, the web process): the counters move with what a client
does, HTTP requests are labelled by route template, a Redis restart is counted, and only a
loopback client or the bearer of METRICS_TOKEN may scrape."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.ratelimit.rules import Rate, RateLimits
from server.services import SERVICES
from server.settings import Settings
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor, World, build_world, make_settings
from tests.procs import RedisServer

TOKEN = "metrics-token-0123456789"


async def scrape(client: TestClient, **headers: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_counters_follow_what_clients_do(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sock = await CableClient.connect(client)
    await sock.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    sent = await visitor.send("hello")
    await sock.wait_event("message.created", lambda d: d["id"] == sent["id"])
    m = await scrape(client)
    assert m[("chat_sockets_open", ())] == 1
    assert m[("chat_subscriptions", ())] == 1
    assert m[("chat_frames_sent_total", ())] >= 1
    assert m[("chat_bus_messages_received_total", ())] >= 1
    assert m[("chat_bus_connected", ())] == 1
    post = (("method", "POST"), ("route", "/api/v1/widget/messages"), ("status", "200"))
    assert m[("chat_http_request_duration_seconds_count", post)] == 1
    await sock.close()
    await client.get("/no/such/path")
    m = await scrape(client)
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert m[("chat_http_request_duration_seconds_count", unmatched)] == 1


async def test_database_call_latency_moves(client: TestClient, visitor: Visitor) -> None:
    """chat_db_call_duration_seconds{kind}: one histogram per kind of call, observed where
    the Database runs it; a visitor's message is writes, listing messages is reads."""

    def calls(m: dict[tuple[str, tuple[Any, ...]], float], kind: str) -> float:
        return m[("chat_db_call_duration_seconds_count", (("kind", kind),))]

    before = await scrape(client)
    await visitor.send("timed")
    assert (await visitor.get("messages")).status == 200
    after = await scrape(client)
    for kind in ("read", "write"):
        assert calls(after, kind) > calls(before, kind), kind
        total = after[("chat_db_call_duration_seconds_sum", (("kind", kind),))]
        assert 0 < total < 60 * calls(after, kind)
        inf = (("kind", kind), ("le", "+Inf"))
        assert after[("chat_db_call_duration_seconds_bucket", inf)] == calls(after, kind)
    db = client.app[SERVICES].db
    assert db.call_times is not None
    assert calls(after, "write") == db.call_times["write"].count


async def test_metrics_can_be_turned_off(db_url: str, tmp_path: Path, aiohttp_client: Any) -> None:
    """METRICS_ENABLED=0: no /metrics, no request or database timing (the figures of
    docs/benchmarks.md compare the two)."""
    settings = make_settings(db_url, tmp_path, metrics_enabled=False)
    client = await aiohttp_client(create_app(settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    await visitor.send("untimed")
    assert (await client.get("/metrics")).status == 404
    assert client.app[SERVICES].db.call_times is None
    assert (await client.get("/livez")).headers["X-Request-ID"]  # the request id stays


async def test_rate_limit_refusals_are_counted(
    db_url: str, tmp_path: Path, aiohttp_client: Any
) -> None:
    limits = RateLimits(contacts_per_address=Rate(2, 3600))
    client = await aiohttp_client(create_app(make_settings(db_url, tmp_path, rate_limits=limits)))
    world = await build_world(client.app[SERVICES].db)
    statuses = [
        (
            await client.post(f"/api/v1/widget/config?website_token={world.inbox['website_token']}")
        ).status
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    m = await scrape(client)
    assert m[("chat_rate_limited_total", (("limit", "contacts_per_address"),))] == 1


async def test_a_token_guards_the_scrape(db_url: str, tmp_path: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url, tmp_path, metrics_token=TOKEN)))
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": TOKEN},
    ):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 404
        assert await resp.json() == {"error": "Resource could not be found"}
    assert (await scrape(client, Authorization=f"Bearer {TOKEN}"))[("chat_bus_connected", ())] == 1


async def test_a_proxied_request_is_not_a_loopback_client(client: TestClient) -> None:
    """nginx on the same machine connects from 127.0.0.1 on behalf of anyone."""
    for header in ("X-Forwarded-For", "Forwarded"):
        resp = await client.get("/metrics", headers={header: "203.0.113.7"})
        assert resp.status == 404, header
    assert (await client.get("/metrics")).status == 200


def test_metrics_token_is_validated() -> None:
    base = {"SECRET_KEY_BASE": "x" * 40}
    for bad in ("short", "x" * 15, "é" * 20, "tab\there-0123456789"):
        with pytest.raises(SystemExit, match="METRICS_TOKEN"):
            Settings.from_env({**base, "METRICS_TOKEN": bad})
    assert Settings.from_env({**base, "METRICS_TOKEN": TOKEN}).metrics_token == TOKEN
    assert Settings.from_env(base).metrics_token is None


async def test_a_redis_restart_is_counted(db_url: str, tmp_path: Path, aiohttp_client: Any) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        client = await aiohttp_client(
            create_app(make_settings(db_url, tmp_path, redis_url=redis.url))
        )
        assert (await scrape(client))[("chat_bus_reconnects_total", ())] == 0
        redis.stop()
        deadline = time.monotonic() + 10
        while (await scrape(client))[("chat_bus_connected", ())] != 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        redis.start()
        deadline = time.monotonic() + 15
        while (m := await scrape(client))[("chat_bus_connected", ())] != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert m[("chat_bus_reconnects_total", ())] == 1
    finally:
        redis.stop()


async def test_the_worker_reports_what_it_publishes_and_its_backlog(tmp_path: Path) -> None:
    """A real web process and worker on one SQLite file and a real Redis: published events
    and the lease show on the worker's /metrics; with Redis gone the backlog grows."""
    import aiohttp

    from tests.procs import base_env, free_port, web_process, worker_process

    redis = RedisServer(tmp_path / "redis").start()
    port = free_port()
    env = base_env(f"sqlite:///{tmp_path / 'chat.db'}", tmp_path / "data", REDIS_URL=redis.url)
    web = web_process({**env, "SEED_DEMO": "1"}, tmp_path / "web.log").start()
    worker = worker_process({**env, "WORKER_HEALTH_PORT": str(port)}, tmp_path / "w.log").start()
    token = web.output().split("website_token=")[1].split(";")[0]
    try:
        async with aiohttp.ClientSession() as http:

            async def worker_metrics() -> dict[str, float]:
                resp = await http.get(f"http://127.0.0.1:{port}/metrics")
                assert resp.status == 200
                return {
                    s.name: s.value
                    for f in text_string_to_metric_families(await resp.text())
                    for s in f.samples
                }

            async def until(pred: Any) -> dict[str, float]:
                deadline = time.monotonic() + 15
                while not pred(m := await worker_metrics()):
                    assert time.monotonic() < deadline, m
                    await asyncio.sleep(0.1)
                return m

            await until(lambda m: m["chat_relay_lease_held"] == 1)
            config = await http.post(f"{web.url}/api/v1/widget/config?website_token={token}")
            auth = {"X-Auth-Token": (await config.json())["website_channel_config"]["auth_token"]}
            url = f"{web.url}/api/v1/widget/messages?website_token={token}"

            async def send(text: str) -> None:
                body = {"message": {"content": text}}
                assert (await http.post(url, json=body, headers=auth)).status == 200

            await send("one")
            m = await until(
                lambda m: (
                    m["chat_relay_events_published_total"] >= 1
                    and m["chat_relay_positions_recorded_total"] >= 1
                )
            )
            assert m["chat_db_call_duration_seconds_count"] >= 1  # the relay's calls
            assert m["chat_outbox_backlog"] == 0
            assert m["chat_outbox_oldest_unpublished_age_seconds"] == 0
            redis.stop()
            await send("two")  # committed; nobody can publish it
            m = await until(
                lambda m: (
                    m["chat_outbox_backlog"] >= 1
                    and m["chat_outbox_oldest_unpublished_age_seconds"] > 0
                )
            )
    finally:
        worker.stop()
        web.stop()
        redis.stop()
