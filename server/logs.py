"""Log lines: plain text or one JSON object per line (`LOG_FORMAT`), each carrying the id of
the HTTP request that wrote it, and one access line per request (`ACCESS_LOG`).

`request_middleware` is the one place a request is timed and its final status taken: the
access line and the HTTP latency metric (server/metrics.py) both get them from it.

The request id is taken from the client's `X-Request-ID` when it is a sane token (a proxy or
a load balancer usually sets one), else made here, and sent back in `X-Request-ID` on every
response, so a user's report, the proxy's log and ours meet on one id. A context variable
carries it to every line logged while the request runs, from any module, without passing it
around (each request runs in its own task, with its own context)."""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pythonjsonlogger.json import JsonFormatter

from server.client_address import client_address

REQUEST_ID = web.RequestKey("request_id", str)
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("server.access")
# Where an entry point reports settings it cannot run with (server/settings.py).
settings_log = logging.getLogger("server.settings")

# Told of every answered request: (request, final status, seconds it took).
Observer = Callable[[web.Request, int, float], None]


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class PlainFormatter(logging.Formatter):
    """The usual text line, with ` [request_id=...]` at the end inside a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request_id={rid}]" if rid else line


def configure(level: str, fmt: str = "plain") -> None:
    """Root logging for a process: level, format, the request-id filter on the handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",  # ISO 8601, UTC
            )
        )
    else:
        handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Alembic says "Context impl ..." each time a revision is read; server/store/migrate.py
    # logs what a migration does.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def request_middleware(
    trusted: tuple[Any, ...], access: bool, observe: Observer | None = None
) -> Any:
    """Outermost middleware: the request's id, then once it is answered (the final status,
    after the error middleware made its response) its access line and `observe` (the
    latency metric), from one clock reading."""

    @web.middleware
    async def with_request_id(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get("X-Request-ID", "")
        rid = given if _SANE_ID.fullmatch(given) else secrets.token_hex(8)
        request[REQUEST_ID] = rid
        token = current_request_id.set(rid)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            if access:
                access_log.info(
                    "%s %s %d %.1f ms %s",
                    request.method,
                    request.path,
                    status,
                    elapsed * 1000,
                    client_address(request, trusted),
                    extra={"method": request.method, "path": request.path, "status": status},
                )
            if observe is not None:
                observe(request, status, elapsed)
            current_request_id.reset(token)

    return with_request_id


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every response, WebSocket handshakes and static files too."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers["X-Request-ID"] = rid
