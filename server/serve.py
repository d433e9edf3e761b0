"""Running the web process: event loop, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from server import allocator, gc_tuning
from server.app import create_app
from server.connections import ConnectionGuard, descriptor_ceiling
from server.health import Health
from server.lifecycle import describe, run_process, until_signalled
from server.services import SERVICES
from server.settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    allocator.return_large_blocks()
    return run_process(_serve(settings), settings)


async def _serve(settings: Settings) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    svc = app[SERVICES]
    assert svc.connections is not None and runner.server is not None
    # After setup: the database is open, so the descriptors it holds are counted.
    svc.guard = ConnectionGuard(
        svc.connections,
        max_connections=descriptor_ceiling(settings.fd_reserve),
        header_timeout=settings.header_timeout,
        trusted=settings.trusted_proxies,
    )
    svc.guard.install(runner.server)
    site = web.TCPSite(
        runner, settings.host, settings.port, backlog=2048, shutdown_timeout=settings.shutdown_grace
    )
    try:
        await site.start()
    except OSError as exc:
        log.error(
            "cannot listen on %s:%s: %s; is another process using that port? Set HOST and "
            "PORT to a free address",
            settings.host,
            settings.port,
            exc.strerror or exc,
        )
        await runner.cleanup()
        raise SystemExit(2) from None
    gc_tuning.tune_after_start(settings.gc_threshold)
    log.info("serving on http://%s:%s (%s)", settings.host, settings.port, describe(settings))
    await until_signalled()
    await drain(svc.health, settings.shutdown_drain)
    log.info("shutting down")
    watchdog = asyncio.get_running_loop().call_later(
        settings.shutdown_grace + 2.0, _log_stuck_tasks
    )
    await runner.cleanup()
    watchdog.cancel()
    log.info("stopped")


async def drain(health: Health, seconds: float) -> None:
    """Answer /readyz 503 while still serving, so a load balancer stops sending us new
    visitors before the sockets we hold are told to reconnect (to another process)."""
    health.draining = True
    if seconds > 0:
        log.info("draining: /readyz answers 503 for %g s before sockets are closed", seconds)
        await asyncio.sleep(seconds)


def _log_stuck_tasks() -> None:
    """Shutdown overran its grace period: say what it is waiting for."""
    tasks = [t for t in asyncio.all_tasks() if not t.done()]
    log.error("shutdown is taking longer than its grace period; %d tasks pending", len(tasks))
    for task in tasks:
        log.error("pending task %s:\n%s", task.get_name(), "".join(_await_chain(task)))


_FRAMES = ("cr_frame", "ag_frame", "gi_frame")
_AWAITS = ("cr_await", "ag_await", "gi_yieldfrom")


def _await_chain(task: asyncio.Task[object]) -> list[str]:
    """Where a task is suspended: its coroutine and each coroutine it awaits, innermost last
    (Task.get_stack shows only the outermost frame of a suspended coroutine)."""
    lines = []
    coro: object = task.get_coro()
    while coro is not None:
        frame = next((getattr(coro, a) for a in _FRAMES if getattr(coro, a, None)), None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
        coro = next((getattr(coro, a) for a in _AWAITS if getattr(coro, a, None)), None)
    return lines
