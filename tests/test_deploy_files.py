"""The deploy files users copy (issue 16 item 8): each Procfile command starts from the
README's install, and docs/env.example is a valid set of settings."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

from server.settings import Settings
from tests.procs import ROOT, RedisServer, free_port


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / "docs" / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_env_example_is_valid_settings() -> None:
    settings = Settings.from_env(env_example())
    assert settings.redis_url and settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.trusted_proxies and settings.worker_health_port == 9100


def test_procfile_commands_start(tmp_path: Path) -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    commands = dict(line.split(":", 1) for line in lines if line.strip())
    assert set(commands) == {"web", "worker"}
    redis = RedisServer(tmp_path / "redis").start()
    ready = {"web": "serving on", "worker": "worker running"}
    try:
        for name, command in commands.items():
            env = {
                **os.environ,
                "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
                "DATA_DIR": str(tmp_path / "data"),
                "REDIS_URL": redis.url,
                "PORT": str(free_port()),
            }
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    shlex.split(command), cwd=ROOT, env=env, stdout=out, stderr=out
                )
                try:
                    deadline = time.monotonic() + 30
                    while ready[name] not in log.read_text(errors="replace"):
                        assert proc.poll() is None, log.read_text()
                        assert time.monotonic() < deadline, log.read_text()
                        time.sleep(0.05)
                finally:
                    proc.terminate()
                    assert proc.wait(15) == 0, log.read_text()
    finally:
        redis.stop()
