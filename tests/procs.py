"""Real processes for multi-process tests: redis-server, `python -m server`, `python -m workers`.

Each is started on a free 127.0.0.1 port, configured through the environment only, with its
output kept in a log file so a failing test can show it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


class RedisServer:
    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        """`persistent`: an append-only file synced on every write, so that a kill -9 and a
        start keep every key (streams, their epochs); otherwise Redis starts empty."""
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (.ci/run installs it)"
        self.binary = binary

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class Process:
    """`python -m server` or `python -m workers` with its own environment and log file."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        log: Path,
        ready: str,
        preexec_fn: Any = None,
    ) -> None:
        self.module = module
        self.preexec_fn = preexec_fn  # run in the child before exec (e.g. setrlimit)
        self.env = env
        self.log_path = log
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env.get("PORT", "0"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Process:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        offset = self._log.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready in self.output(offset):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited early:\n{self.output()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.module} not ready in {timeout}s:\n{self.output()}")

    def output(self, offset: int = 0) -> str:
        try:
            return self.log_path.read_bytes()[offset:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()


def base_env(database_url: str, data_dir: Path, **extra: Any) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "SECRET_KEY_BASE": "scaled-test-secret-" + "y" * 32,
        "SEED_DEMO": "0",
        "LOG_LEVEL": "INFO",
        "RELAY_LEASE_TTL": "1.5",
        "RELAY_POLL_INTERVAL": "0.5",
        "SHUTDOWN_GRACE": "3",
        "MESSAGES_PER_MINUTE": "100000",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def web_process(env: dict[str, str], log: Path, preexec_fn: Any = None) -> Process:
    return Process(
        "server", {**env, "PORT": str(free_port())}, log, ready="serving on", preexec_fn=preexec_fn
    )


def worker_process(env: dict[str, str], log: Path) -> Process:
    return Process("workers", env, log, ready="worker running")


def tokens_from_log(text: str) -> dict[str, str]:
    match = re.search(r"website_token=(\S+); agent access_token=(\S+)", text)
    assert match, text
    return {"website_token": match.group(1), "access_token": match.group(2)}
