"""Errors as JSON: every failure a client can cause is a 4xx with a body that says why."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from server.store.unavailable import DatabaseUnavailable

log = logging.getLogger(__name__)

NOT_FOUND = {"error": "Resource could not be found"}
UNAVAILABLE = {"error": "database unavailable, retry shortly"}
# Seconds a client is asked to wait before retrying a call the database could not answer.
RETRY_AFTER = "2"


class ApiError(Exception):
    """Raised by handlers and the store; the middleware turns it into a JSON response."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers


def bad_request(message: str) -> ApiError:
    return ApiError(400, {"error": message})


def unauthorized(message: str) -> ApiError:
    return ApiError(401, {"error": message})


def forbidden(message: str) -> ApiError:
    return ApiError(403, {"error": message})


def not_found(body: dict[str, Any] | None = None) -> ApiError:
    return ApiError(404, body or NOT_FOUND)


def unprocessable(message: str) -> ApiError:
    return ApiError(422, {"error": message})


def bad_gateway(message: str) -> ApiError:
    return ApiError(502, {"error": message})


def json_response(body: Any, status: int = 200) -> web.Response:
    from server.jsonutil import dumps

    return web.Response(body=dumps(body), status=status, content_type="application/json")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = json_response(exc.body, exc.status)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    except DatabaseUnavailable:
        # Logged and counted once per outage by the Database (server/store/unavailable.py).
        response = json_response(UNAVAILABLE, 503)
        response.headers["Retry-After"] = RETRY_AFTER
        return response
    except web.HTTPRequestEntityTooLarge:
        return json_response({"error": "request body too large"}, 413)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason or "error"
        if exc.status == 404:
            return json_response({"error": "not found"}, 404)
        return json_response({"error": reason.lower()}, exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": "internal server error"}, 500)
