"""Issue 13 §4's floods against a real server: what each one achieves.

Starts `python -m server` on the embedded default (a SQLite file in a temp dir, no Redis,
an inbox with a voice agent pointed at a fake ElevenLabs on 127.0.0.1) from the source tree
given by --repo (default: this one; point it at an export of an older commit to compare),
then, from 127.0.0.1:

- 300 x POST /api/v1/widget/config and 300 x GET /widget without a token (new contacts);
- one visitor: 300 x POST /conversations, 300 x voice_signed_url, 1,000 x toggle_typing;
- one /cable socket: 3,000 subscribes with unknown tokens (counts rejects, the disconnect
  frame and the server's "rejected subscription" log lines);
- two /cable sockets: update_presence as fast as they can for 10 s.

It prints the answers per status and what the sockets got. Not a benchmark: no timing is
asserted; it is the before/after evidence for the rate limits (server/ratelimit).

    .venv/bin/python bench/floods.py
    git archive <commit> | tar -x -C /tmp/old && .venv/bin/python bench/floods.py --repo /tmp/old
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_elevenlabs import FakeElevenLabs  # noqa: E402

KEY, AGENT = "sk_bench_floods", "agent_bench_floods"
WIDGET = "/api/v1/widget"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(repo: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "server", "admin", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


async def many(n: int, make: Callable[[], Awaitable[aiohttp.ClientResponse]]) -> str:
    start = time.monotonic()
    responses = await asyncio.gather(*(make() for _ in range(n)))
    codes = Counter(r.status for r in responses)
    for r in responses:
        r.release()
    return f"{dict(sorted(codes.items()))} in {time.monotonic() - start:.2f} s"


async def read_frames(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            msg = await ws.receive(timeout=max(0.1, end - time.monotonic()))
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        frames.append(json.loads(msg.data))
    return frames


def disconnect_of(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((f for f in frames if f.get("type") == "disconnect"), None)


def log_lines(log: Path, text: bytes) -> int:
    return log.read_bytes().count(text)


def start_server(repo: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server"], cwd=repo, env=env, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 20
    while "serving on" not in log_path.read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(log_path.read_text(errors="replace"))
        time.sleep(0.05)
    return proc


async def subscribe_flood(session: aiohttp.ClientSession, log: Path) -> str:
    before = log_lines(log, b"rejected subscription")
    ws = await session.ws_connect("/cable", protocols=("actioncable-v1-json",))
    sent = 0
    for i in range(3000):
        if ws.closed:
            break
        ident = json.dumps({"channel": "RoomChannel", "pubsub_token": f"unknown-{i}"})
        try:
            await ws.send_str(json.dumps({"command": "subscribe", "identifier": ident}))
        except (ConnectionError, RuntimeError):
            break
        sent += 1
    frames = await read_frames(ws, 10)
    await asyncio.sleep(0.5)
    lines = log_lines(log, b"rejected subscription") - before
    rejects = sum(f.get("type") == "reject_subscription" for f in frames)
    await ws.close()
    return (
        f"sent {sent}, rejects {rejects}, disconnect {disconnect_of(frames)}, "
        f"'rejected subscription' log lines {lines}"
    )


async def presence_flood(session: aiohttp.ClientSession, pubsub_token: str) -> str:
    ws = await session.ws_connect("/cable", protocols=("actioncable-v1-json",))
    ident = json.dumps({"channel": "RoomChannel", "pubsub_token": pubsub_token})
    await ws.send_str(json.dumps({"command": "subscribe", "identifier": ident}))
    data = json.dumps({"action": "update_presence"})
    frame = json.dumps({"command": "message", "identifier": ident, "data": data})
    reading = asyncio.ensure_future(read_frames(ws, 11))
    sent, end = 0, time.monotonic() + 10
    while time.monotonic() < end and not ws.closed:
        try:
            await ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            break
        sent += 1
        if sent % 100 == 0:
            await asyncio.sleep(0)
    if not ws.closed:
        await ws.close()
    frames = await reading
    answers = sum(
        isinstance(f.get("message"), dict) and f["message"].get("event") == "presence.update"
        for f in frames
    )
    return f"sent {sent}, presence.update answers {answers}, disconnect {disconnect_of(frames)}"


async def run(repo: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-floods-"))
    async with FakeElevenLabs(api_key=KEY, agent_id=AGENT) as fake:
        port = free_port()
        env = {
            **os.environ,
            "DATA_DIR": str(tmp),
            "DATABASE_URL": f"sqlite:///{tmp}/chat.db",
            "PORT": str(port),
            "LOG_LEVEL": "INFO",
            "SEED_DEMO": "0",
            "ELEVENLABS_BASE_URL": fake.base_url,
            "PYTHONPATH": str(repo),
        }
        env.pop("REDIS_URL", None)
        account = admin(repo, env, "create-account", "--name", "floods")
        inbox = admin(
            repo,
            env,
            *("create-inbox", "--account", str(account["id"]), "--name", "floods"),
            *("--elevenlabs-agent-id", AGENT, "--elevenlabs-api-key", KEY),
        )
        log_path = tmp / "server.log"
        proc = start_server(repo, env, log_path)
        try:
            await drive(f"http://127.0.0.1:{port}", inbox["website_token"], fake, log_path)
        finally:
            proc.terminate()
            proc.wait(10)


async def drive(base: str, wt: str, fake: FakeElevenLabs, log: Path) -> None:
    async with aiohttp.ClientSession(base) as s:
        config = f"{WIDGET}/config?website_token={wt}"
        print("300 x POST /config:", await many(300, lambda: s.post(config)))
        page = f"/widget?website_token={wt}"
        print("300 x GET /widget:", await many(300, lambda: s.get(page)))
        # The visitor for the next floods: the address may have no budget left for a new
        # contact; the wait is what Retry-After says.
        for _ in range(10):
            resp = await s.post(config)
            if resp.status == 200:
                break
            await asyncio.sleep(int(resp.headers.get("Retry-After", "1")))
        body = await resp.json()
        auth = {"X-Auth-Token": body["website_channel_config"]["auth_token"]}
        pubsub_token = body["contact"]["pubsub_token"]
        conv = f"{WIDGET}/conversations?website_token={wt}"
        first = {"message": {"content": "hi"}}
        print(
            "300 x POST /conversations, one visitor:",
            await many(300, lambda: s.post(conv, json=first, headers=auth)),
        )
        voice = f"{WIDGET}/conversations/voice_signed_url?website_token={wt}"
        print(
            "300 x voice_signed_url, one visitor:",
            await many(300, lambda: s.get(voice, headers=auth)),
            f"(ElevenLabs asked {len(fake.requests)} times)",
        )
        typing = f"{WIDGET}/conversations/toggle_typing?website_token={wt}"
        on = {"typing_status": "on"}
        print(
            "1000 x toggle_typing, one visitor:",
            await many(1000, lambda: s.post(typing, json=on, headers=auth)),
        )
        print("3000 unknown subscribes, one socket:", await subscribe_flood(s, log))
        for line in await asyncio.gather(*(presence_flood(s, pubsub_token) for _ in range(2))):
            print("update_presence for 10 s, one socket:", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repo", type=Path, default=ROOT, help="source tree to run the server from"
    )
    asyncio.run(run(parser.parse_args().repo.resolve()))


if __name__ == "__main__":
    main()
