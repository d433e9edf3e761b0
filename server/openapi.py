"""GET /api/openapi.json: the machine-readable API reference, docs/openapi.json as it is in
the repository (the file is the maintained artifact; tests/test_openapi.py holds it to the
routes and to real answers). Read once, at the first request, and kept as bytes."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aiohttp import web

from server.errors import json_response

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
PATH = "/api/openapi.json"


@cache
def _document() -> bytes | None:
    try:
        return DOCUMENT.read_bytes()
    except FileNotFoundError:  # installed without the repository's docs/
        return None


async def handler(request: web.Request) -> web.Response:
    body = _document()
    if body is None:
        return json_response({"error": "docs/openapi.json is not installed with this server"}, 404)
    return web.Response(body=body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, handler)
