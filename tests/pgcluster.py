"""A throwaway PostgreSQL cluster for fault tests: its own data directory and port, so a
test can freeze it (SIGSTOP), stop and start it without touching the shared server."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.procs import free_port, wait_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"PostgreSQL's {name} is not installed under /usr/lib/postgresql/*/bin"
    return found[-1]


def _as_postgres() -> Any:
    """PostgreSQL refuses to run as root: when we are root, run it as the postgres user."""
    if os.getuid() != 0:
        return None
    user = pwd.getpwnam("postgres")

    def demote() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return demote


class PgCluster:
    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are private to root, and the cluster runs
        # as postgres.
        self.dir = Path(tempfile.mkdtemp(prefix="chat-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PgCluster:
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            [_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_as_postgres(),
        )
        return self

    def start(self, timeout: float = 20.0) -> PgCluster:
        log = open(self.log, "ab")  # noqa: SIM115 (kept open by the child)
        self.proc = subprocess.Popen(
            [
                _bin("postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
            ],
            stdout=log,
            stderr=log,
            preexec_fn=_as_postgres(),
        )
        log.close()
        wait_port(self.port, timeout)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL on {self.port} not ready after {timeout}s")

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, background workers)."""
        assert self.proc is not None
        found = [self.proc.pid]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.split("/")[2]))
        return found

    def freeze(self) -> None:
        """SIGSTOP the whole cluster: connections stay open and nothing answers."""
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # a backend that ended since pids() listed it
                pass

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, the port closes."""
        if self.proc is None:
            return
        self.thaw()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
