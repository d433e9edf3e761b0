"""Logs (issue 16 item 3), from a real `python -m server`: LOG_FORMAT=json gives one JSON
object per line; every line a request logs carries its id (the client's X-Request-ID when
sane, else a new one, sent back); one access line per request unless ACCESS_LOG=0."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.settings import Settings
from tests.procs import base_env, web_process


def start(tmp_path: Path, **env: str) -> Any:
    base = base_env(
        f"sqlite:///{tmp_path / 'chat.db'}",
        tmp_path / "data",
        SEED_DEMO="1",
        LIMIT_CONTACTS_PER_ADDRESS="1/3600",
        **env,
    )
    return web_process(base, tmp_path / "web.log").start()


def website_token(output: str) -> str:
    return output.split("website_token=")[1].split(";")[0]


def lines_until(web: Any, pred: Any, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = web.output().splitlines()
        if pred(lines):
            return lines
        assert time.monotonic() < deadline, web.output()[-2000:]
        time.sleep(0.05)


async def test_json_lines_carry_the_request_id(tmp_path: Path) -> None:
    web = start(tmp_path, LOG_FORMAT="json")
    try:
        token = website_token(web.output())
        async with aiohttp.ClientSession() as http:
            url = f"{web.url}/api/v1/widget/config?website_token={token}"
            first = await http.post(url, headers={"X-Request-ID": "req-42.a"})
            assert first.status == 200
            assert first.headers["X-Request-ID"] == "req-42.a"
            # The address's one new contact is spent: this request logs a warning itself.
            second = await http.post(url, headers={"X-Request-ID": "bad id with spaces"})
            assert second.status == 429
            rid = second.headers["X-Request-ID"]
            assert rid != "bad id with spaces" and len(rid) == 16
        lines = lines_until(web, lambda ls: sum('"server.access"' in line for line in ls) >= 2)
    finally:
        web.stop()
    records = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    access = [r for r in records if r["logger"] == "server.access"]
    assert [(r["request_id"], r["status"], r["method"]) for r in access] == [
        ("req-42.a", 200, "POST"),
        (rid, 429, "POST"),
    ]
    assert all({"time", "level", "message"} <= set(r) for r in records)
    warnings = [r for r in records if r["logger"].startswith("server.ratelimit")]
    assert warnings and warnings[0]["request_id"] == rid
    assert records[0].get("request_id") is None  # start-up lines belong to no request


async def test_plain_lines_and_access_log_off(tmp_path: Path) -> None:
    web = start(tmp_path, ACCESS_LOG="0")
    try:
        token = website_token(web.output())
        async with aiohttp.ClientSession() as http:
            url = f"{web.url}/api/v1/widget/config?website_token={token}"
            assert (await http.post(url)).status == 200
            resp = await http.post(url, headers={"X-Request-ID": "plain-1"})
            assert resp.status == 429
        lines = lines_until(web, lambda ls: any("[request_id=plain-1]" in line for line in ls))
    finally:
        web.stop()
    assert not any("server.access" in line for line in lines)
    line = next(line for line in lines if "[request_id=plain-1]" in line)
    assert " WARNING server.ratelimit" in line


def test_log_format_is_validated() -> None:
    base = {"SECRET_KEY_BASE": "x" * 40}
    with pytest.raises(SystemExit, match="LOG_FORMAT"):
        Settings.from_env({**base, "LOG_FORMAT": "xml"})
    assert Settings.from_env({**base, "LOG_FORMAT": "JSON"}).log_format == "json"
