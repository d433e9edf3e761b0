"""What every long-running process of ours does the same way: run its event loop, describe
its setup in one log line, wait for SIGTERM/SIGINT, and stop background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from server.settings import Settings
from server.store.db import safe_database_url

log = logging.getLogger(__name__)


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop where it is installed (a dependency on Linux). Our processes spend
    most of their time in the event loop's socket reads and writes, which uvloop does in C:
    the worker relaying 500 events/s took 14-16 % of a core on it, 17-21 % on asyncio's
    (bench/fanout.py latency)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main)
    else:
        uvloop.run(main)


def run_process(main: Coroutine[Any, Any, int | None], settings: Settings) -> int:
    """`run_loop`, with what stops a process at start told in one line and exit status 2
    instead of a traceback: a database that cannot be reached (the line says which URL,
    without its password) or whose schema is not this version's (the line says what to
    run). Both are the operator's to fix. Returns `main`'s exit status (0 for None)."""
    import asyncpg
    from sqlalchemy.exc import SQLAlchemyError

    from server.store.migrate import SchemaNotCurrent

    result: list[int | None] = []

    async def keep() -> None:
        result.append(await main)

    try:
        run_loop(keep())
    except SchemaNotCurrent as exc:
        log.error("%s", exc)
        return 2
    except (OSError, SQLAlchemyError, asyncpg.PostgresError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        log.error(
            "cannot use the database at %s: %s (%s); check DATABASE_URL and that the database "
            "server is up and the database exists",
            safe_database_url(settings.database_url),
            reason,
            type(getattr(exc, "orig", None) or exc).__name__,
        )
        return 2
    return (result[0] if result else None) or 0


def describe(settings: Settings) -> str:
    """The database (without credentials) and the bus, for the startup log line."""
    bus = "redis" if settings.redis_url else "in-process"
    return f"database {safe_database_url(settings.database_url)}, bus {bus}"


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cancel(task: asyncio.Task[None] | None, timeout: float = 2.0) -> None:
    """Cancel a background task and wait, at most `timeout`, until it has stopped.

    Bounded because a library may swallow a cancellation that lands inside its I/O; loops
    that must stop should also watch a closing flag of their own."""
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
    else:
        log.warning("task %s did not stop within %.1fs of cancel", task.get_name(), timeout)
