"""`python -m server admin ...` and the first start of `python -m server`, run as real
subprocesses against a temporary SQLite file and a temporary PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from server import admin as server_admin
from server.__main__ import build_parser
from server.auth import decode_contact_token
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SECRET = "cli-secret-" + "c" * 40


def env_for(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SEED_DEMO", "REDIS_URL", "DATABASE_URL", "PORT", "HOST", "RUN_RELAY"}
    }
    env.update(
        DATABASE_URL=db_url,
        DATA_DIR=str(tmp_path / "data"),
        SECRET_KEY_BASE=SECRET,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


async def admin(db_url: str, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "admin",
        *args,
        env=env_for(db_url, tmp_path),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


async def admin_in_process(db_url: str, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """`admin`, with the command's own code run in this process (the parser, the settings
    from the same environment, `server.admin.run`), without the seconds a new interpreter
    takes to start: for tests about what a command does. `admin` itself is kept for the
    tests of the command line as a person runs it."""
    parsed = build_parser().parse_args(["admin", *args])
    settings = Settings.from_env(env_for(db_url, tmp_path))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = await server_admin.run(settings, parsed)
    return code, out.getvalue(), err.getvalue()


def one_json_object(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    value = orjson.loads(lines[0])
    assert isinstance(value, dict)
    return value


def json_error(stderr: str) -> dict[str, Any]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    value = orjson.loads(lines[-1])
    assert isinstance(value, dict) and isinstance(value.get("error"), str), stderr
    return value


async def test_admin_commands(db_url: str, tmp_path: Path) -> None:
    code, out, err = await admin(db_url, tmp_path, "create-account", "--name", "Acme")
    assert code == 0, err
    account = one_json_object(out)
    assert account["name"] == "Acme" and isinstance(account["id"], int)
    acc = str(account["id"])

    code, out, err = await admin(
        db_url,
        tmp_path,
        "create-inbox",
        "--account",
        acc,
        "--name",
        "Site",
        "--website-url",
        "https://acme.test",
        "--end-conversation",
        "--hmac-mandatory",
        "--elevenlabs-agent-id",
        "agent_1",
        "--elevenlabs-api-key",
        "sk_cli_secret_key",
    )
    assert code == 0, err
    inbox = one_json_object(out)
    assert inbox["account_id"] == account["id"]
    assert inbox["name"] == "Site"
    assert inbox["website_url"] == "https://acme.test"
    assert inbox["end_conversation"] is True
    assert inbox["hmac_mandatory"] is True
    assert inbox["elevenlabs_agent_id"] == "agent_1"
    assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{24}", inbox["website_token"])
    assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{24}", inbox["hmac_token"])
    assert "sk_cli_secret_key" not in out  # the key is stored, never printed

    code, out, err = await admin(
        db_url,
        tmp_path,
        "create-agent",
        "--account",
        acc,
        "--name",
        "Ann",
        "--email",
        "Ann@Acme.test",
        "--inbox",
        str(inbox["id"]),
        "--administrator",
    )
    assert code == 0, err
    agent = one_json_object(out)
    assert agent["account_id"] == account["id"]
    assert agent["email"] == "ann@acme.test"
    assert agent["role"] == "administrator"
    assert isinstance(agent["id"], int)
    assert len(agent["access_token"]) >= 24
    assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{24}", agent["pubsub_token"])

    # A plain agent, with no inbox.
    code, out, err = await admin(
        db_url, tmp_path, "create-agent", "--account", acc, "--name", "Bo", "--email", "bo@x.io"
    )
    assert code == 0, err
    assert one_json_object(out)["role"] == "agent"


def assert_refused(result: tuple[int, str, str], what: Any) -> dict[str, Any]:
    code, out, err = result
    assert code != 0, what
    assert out.strip() == "", what
    assert "Traceback" not in err, err
    return json_error(err)


async def test_admin_errors(db_url: str, tmp_path: Path) -> None:
    """Refusals are one JSON object on stderr and a non-zero exit. Independent commands run
    at once, to keep the test quick."""
    run = admin
    a, b, *refused = await asyncio.gather(
        run(db_url, tmp_path, "create-account", "--name", "A"),
        run(db_url, tmp_path, "create-account", "--name", "B"),
        run(db_url, tmp_path, "create-inbox", "--account", "999", "--name", "Nope"),
        run(db_url, tmp_path, "create-agent", "--account", "999", "--name", "N", "--email", "n@x"),
        run(db_url, tmp_path, "create-account", "--name", "   "),
    )
    assert "999" in assert_refused(refused[0], "unknown account")["error"]
    assert "999" in assert_refused(refused[1], "unknown account")["error"]
    assert_refused(refused[2], "blank name")
    acc, other = str(one_json_object(a[1])["id"]), str(one_json_object(b[1])["id"])

    agent_args = ("create-agent", "--account", acc, "--name", "Dup", "--email", "dup@x.io")
    inbox, first = await asyncio.gather(
        run(db_url, tmp_path, "create-inbox", "--account", other, "--name", "B"),
        run(db_url, tmp_path, *agent_args),
    )
    assert first[0] == 0, first[2]
    assert one_json_object(inbox[1])["hmac_mandatory"] is False
    other_inbox = str(one_json_object(inbox[1])["id"])
    foreign, bad_email, dup = await asyncio.gather(
        run(db_url, tmp_path, *agent_args[:-1], "x@x.io", "--inbox", other_inbox),
        run(db_url, tmp_path, *agent_args[:-1], "not-an-email"),
        run(db_url, tmp_path, *agent_args[:-1], "DUP@x.io"),
    )
    assert other_inbox in assert_refused(foreign, "inbox of another account")["error"]
    assert_refused(bad_email, "bad email")
    # The same email twice: a clear JSON error, not a traceback.
    assert "dup@x.io" in assert_refused(dup, "duplicate email")["error"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_first_start_seeds_demo_data(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = env_for(
        db_url, tmp_path, PORT=str(port), HOST="127.0.0.1", LOG_LEVEL="INFO", SEED_DEMO="1"
    )  # on by default on SQLite only (tests/test_settings_validation.py)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    log: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("serving on" in line for line in log):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no 'serving on' within 30 s:\n" + "".join(log)
            line = await asyncio.wait_for(proc.stderr.readline(), timeout=remaining)
            assert line, "the server exited:\n" + "".join(log)
            log.append(line.decode())
        text = "".join(log)
        website_token = re.search(r"website_token=([1-9A-HJ-NP-Za-km-z]{24})", text)
        access_token = re.search(r"access_token=(\S+)", text)
        assert website_token and access_token, text

        # The logged website_token is a working inbox with the demo agent as a member.
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}/api/v1/widget"
            query = f"?website_token={website_token.group(1)}"
            async with http.get(f"{base}/inbox_members{query}") as resp:
                assert resp.status == 200
                members = (await resp.json())["payload"]
            assert [m["name"] for m in members] == ["Demo Agent"]
            async with http.post(f"{base}/config{query}") as resp:
                assert resp.status == 200
                token = (await resp.json())["website_channel_config"]["auth_token"]
            assert decode_contact_token(SECRET, token) is not None
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    # A clean stop on SIGTERM.
    assert proc.returncode == 0

    # A second start on the same database seeds nothing more.
    code, out, err = await admin(db_url, tmp_path, "create-account", "--name", "After")
    assert code == 0, err
    assert one_json_object(out)["id"] == 2
