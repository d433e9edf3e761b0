"""Images Chatwoot's widget loads from the server's own origin: the avatar of a message with
no sender (`/assets/images/chatwoot_bot.png`, widget/components/AgentMessage.vue and
UnreadMessage.vue) and the branding of its footer (`globalConfig.logoThumbnail`, which
Chatwoot's installation config points at `/brand-assets/logo_thumbnail.svg`; the logos
beside it for pages that ask). Ours are plain, neutral images (server/assets/).

A fixed set, read once at start and served from memory with a validator and a day of
caching: they change only with a release."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

ASSETS_DIR = Path(__file__).parent / "assets"
CACHE_CONTROL = "public, max-age=86400"

# URL path -> (file under ASSETS_DIR, content type)
ASSETS = {
    "/assets/images/chatwoot_bot.png": ("images/chatwoot_bot.png", "image/png"),
    "/brand-assets/logo_thumbnail.svg": ("brand/logo_thumbnail.svg", "image/svg+xml"),
    "/brand-assets/logo.svg": ("brand/logo.svg", "image/svg+xml"),
    "/brand-assets/logo_dark.svg": ("brand/logo_dark.svg", "image/svg+xml"),
}
LOGO_THUMBNAIL = "/brand-assets/logo_thumbnail.svg"


def _handler(body: bytes, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag}

    async def serve(request: web.Request) -> web.Response:
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type, headers=headers)

    return serve


def add_routes(app: web.Application) -> None:
    for path, (name, content_type) in ASSETS.items():
        app.router.add_get(path, _handler((ASSETS_DIR / name).read_bytes(), content_type))
