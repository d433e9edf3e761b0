"""GET /livez and GET /readyz: what a load balancer or an orchestrator asks a process.

- /livez: the process serves HTTP (its event loop turns). Nothing else is checked: a
  process whose database is down is alive, and restarting it would not help.
- /readyz: it can do its work right now: the database answers a query, the bus is
  connected (and, on Redis, answers a PING), and the process is not shutting down. Each
  check has a deadline (`HEALTH_TIMEOUT`), so the probe never hangs on what it probes.
  503 names the failing checks; why they fail goes to the log (once per change), not to
  whoever can reach the probe.

On SIGTERM a web process turns /readyz to 503 first and keeps serving for
`SHUTDOWN_DRAIN` seconds, so a load balancer takes it out of rotation before its sockets
get their disconnect frame (server/serve.py). The worker serves the same two paths on its
own port (`WORKER_HEALTH_PORT`, workers/__main__.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.bus import Bus
from server.errors import json_response
from server.store import ping
from server.store.db import Database

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]


class Health:
    """The checks of one process, and whether it is draining."""

    def __init__(self, checks: dict[str, Check], timeout: float) -> None:
        self.checks = checks
        self.timeout = timeout
        self.draining = False
        self.failures = 0  # /readyz answers that were 503, for operators
        self._failing: dict[str, str] = {}  # check -> reason, to log changes only

    async def _run(self, check: Check) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                await check()
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as exc:  # a probe reports what failed; it never raises
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        return "ok"

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        report = dict(zip(names, results, strict=True))
        self._log_changes(report)
        if self.draining:
            report["shutting_down"] = "draining before exit"
        ready = all(r == "ok" for r in report.values())
        return ready, report

    def _log_changes(self, report: dict[str, str]) -> None:
        """The reason a check fails goes to the log, once per change, not to the probe's
        answer (which anyone who can reach the port can read)."""
        for name, result in report.items():
            if result == "ok":
                if self._failing.pop(name, None) is not None:
                    log.info("readiness check %s passes again", name)
            elif self._failing.get(name) != result:
                self._failing[name] = result
                log.warning("readiness check %s fails: %s", name, result)

    async def livez(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready, report = await self.readiness()
        checks = {name: ("ok" if result == "ok" else "failed") for name, result in report.items()}
        if ready:
            return json_response({"status": "ready", "checks": checks})
        self.failures += 1
        failed = sorted(name for name, result in checks.items() if result != "ok")
        return json_response(
            {"status": "unavailable", "failed": failed, "checks": checks}, status=503
        )

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)


def standard_checks(db: Database, bus: Bus) -> dict[str, Check]:
    """What both the web process and the worker depend on: the database and the bus."""

    async def database() -> None:
        await db.read(ping)

    async def bus_check() -> None:
        await bus.check()

    return {"database": database, "bus": bus_check}
