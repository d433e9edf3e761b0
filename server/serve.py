"""Running the web process: event loop, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from server.app import create_app
from server.lifecycle import describe, until_signalled
from server.settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    else:
        runner = uvloop.run  # type: ignore[assignment]
    runner(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.host, settings.port, backlog=2048, shutdown_timeout=settings.shutdown_grace
    )
    await site.start()
    log.info("serving on http://%s:%s (%s)", settings.host, settings.port, describe(settings))
    await until_signalled()
    log.info("shutting down")
    await runner.cleanup()
    log.info("stopped")
