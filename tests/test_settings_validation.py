"""Settings an operator gets wrong (issue 16 item 5): bad values stop the process at start
with one line naming every bad variable (all at once) and exit status 2, never a traceback;
a database that cannot be reached is one line naming the URL without its password, exit
status 2, no traceback; the demo account is made (and the schema migrated at start) on the
embedded default only."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.settings import Settings, SettingsError
from tests.conftest import PG_DSN
from tests.procs import ROOT

BASE = {"SECRET_KEY_BASE": "x" * 40}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "99999"),
        ("PORT", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("DATABASE_URL", "mysql://root:pw@db/chat"),
        ("REDIS_URL", "http://cache:6379"),
        ("SEND_QUEUE_SIZE", "-5"),
        ("PING_INTERVAL", "0"),
        ("MAX_BODY_BYTES", "-1"),
        ("WIDGET_TOKEN_EXPIRY", "0"),
        ("MESSAGES_PER_MINUTE", "0"),
        ("SHUTDOWN_GRACE", "-1"),
        ("RELAY_LEASE_TTL", "inf"),
        ("DB_WRITERS", "0"),
        ("SESSION_TTL", "-1"),
        ("SESSION_TTL", "90000"),
        ("SESSION_TTL", "nan"),
        ("LIMIT_HISTORY_PER_SOCKET", "lots"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SystemExit) as exc:
        Settings.from_env({**BASE, name: value})
    assert name in str(exc.value)
    assert "pw" not in str(exc.value)  # never a password back in a message


def test_session_ttl_zero_turns_sessions_off() -> None:
    assert Settings.from_env(BASE).session_ttl == 300.0
    assert Settings.from_env({**BASE, "SESSION_TTL": "0"}).session_ttl == 0.0


def test_the_demo_account_is_made_on_the_embedded_default_only(tmp_path: Path) -> None:
    embedded = Settings.from_env({**BASE, "DATA_DIR": str(tmp_path)})
    assert embedded.seed_demo is True and embedded.auto_migrate is True
    pg = Settings.from_env({**BASE, "DATABASE_URL": "postgresql://u@h/d"})
    assert pg.seed_demo is False and pg.auto_migrate is False
    forced = {**BASE, "DATABASE_URL": "postgresql://u@h/d", "SEED_DEMO": "1", "AUTO_MIGRATE": "on"}
    assert Settings.from_env(forced).seed_demo is True
    assert Settings.from_env(forced).auto_migrate is True


BAD = {
    "PORT": "99999",
    "LOG_LEVEL": "LOUD",
    "DATABASE_URL": "mysql://root:pw@db/chat",
    "PING_INTERVAL": "0",
    "ACCESS_LOG": "maybe",
    "LIMIT_TYPING_PER_SENDER": "lots",
    "METRICS_TOKEN": "short-s3cret",
}


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({**BAD, "DATA_DIR": str(tmp_path)})
    assert len(exc.value.problems) == len(BAD)
    for name, problem in zip(BAD, sorted(exc.value.problems, key=order), strict=True):
        assert problem.startswith(f"{name} must be"), problem
    message = str(exc.value)
    assert "\n" not in message and message.startswith("invalid settings (7)")
    assert "pw" not in message and "s3cret" not in message
    # Nothing is written for settings that cannot run (the generated SECRET_KEY_BASE).
    assert not (tmp_path / "secret_key_base").exists()


def order(problem: str) -> int:
    return list(BAD).index(problem.split(" ", 1)[0])


@pytest.mark.parametrize("module", ["server", "workers"])
def test_bad_settings_stop_the_process_with_one_line_and_status_2(
    tmp_path: Path, module: str
) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), **BAD}
    proc = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and " ERROR server.settings: invalid settings (7)" in lines[0], lines
    assert all(name in lines[0] for name in BAD)
    assert "pw" not in proc.stderr and "s3cret" not in proc.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:s3cret-pw@127.0.0.1:1/chat",  # nothing listens
        PG_DSN.rsplit("/", 1)[0] + "/no_such_database_here",  # no such database
    ],
)
@pytest.mark.parametrize("module", ["server", "workers"])
def test_an_unreachable_database_is_one_line(tmp_path: Path, url: str, module: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        **BASE,
        "DATABASE_URL": url,
        "DATA_DIR": str(tmp_path),
        "PORT": "39999",
    }
    proc = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "cannot use the database at postgresql" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr


def test_a_port_in_use_is_one_line_not_a_database_error(tmp_path: Path) -> None:
    """Binding failed: the line says so and names the address (it once blamed the database)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "PATH": "/usr/bin:/bin",
            **BASE,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
            "DATA_DIR": str(tmp_path),
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "server"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0], proc.stderr
    assert "database" not in errors[0]
    assert "Traceback" not in proc.stderr
