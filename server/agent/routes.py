"""Routes of the agent API (contract §6)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Registers the agent endpoints on `app`."""
