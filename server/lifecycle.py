"""What every long-running process of ours does the same way: describe its setup in one log
line, wait for SIGTERM/SIGINT, and stop background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from server.settings import Settings


def describe(settings: Settings) -> str:
    """The database (without credentials) and the bus, for the startup log line."""
    bus = "redis" if settings.redis_url else "in-process"
    return f"database {settings.database_url.split('@')[-1]}, bus {bus}"


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has really stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
