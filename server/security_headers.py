"""Headers that tell browsers what our answers may be used for, on every response.

- `X-Content-Type-Options: nosniff`: a JSON answer or a static file is never run as a
  script or rendered as HTML because its bytes look like one.
- `Referrer-Policy: strict-origin-when-cross-origin`: links out of our pages carry our
  origin at most, never a path or a query (the widget page's query holds tokens).
- `Content-Security-Policy: frame-ancestors 'none'` and `X-Frame-Options: DENY`: no site can
  put the agent console (or anything else of ours) in a frame and trick an agent into
  clicking in it.

The one exception is GET /widget, which lives in an iframe on the customer's site: it is
frameable by the inbox's `website_url` origin when one is set, by anyone otherwise
(`allow_framing`), and never gets X-Frame-Options (which cannot name an origin)."""

from __future__ import annotations

import functools
import logging
import re

from aiohttp import web
from yarl import URL

log = logging.getLogger(__name__)

_FRAMEABLE = web.RequestKey("frameable", bool)
_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")

NOSNIFF = "nosniff"
REFERRER_POLICY = "strict-origin-when-cross-origin"
NO_FRAMES = "frame-ancestors 'none'"


async def add_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: runs once per response, pages, API and static files alike.
    Not a WebSocket handshake: a browser applies none of these to a socket, and its
    response (headers included) lives as long as the socket (0.8 KB each, measured)."""
    if isinstance(response, web.WebSocketResponse):
        return
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", NOSNIFF)
    headers.setdefault("Referrer-Policy", REFERRER_POLICY)
    if not request.get(_FRAMEABLE):
        headers.setdefault("Content-Security-Policy", NO_FRAMES)
        headers.setdefault("X-Frame-Options", "DENY")


def allow_framing(
    request: web.Request, response: web.StreamResponse, website_url: str | None
) -> None:
    """Let this page be framed: by our own origin and `website_url`'s when it names one,
    by any site when it does not."""
    request[_FRAMEABLE] = True
    policy = frame_ancestors(website_url) if website_url else None
    if policy:
        response.headers["Content-Security-Policy"] = policy


@functools.lru_cache(maxsize=1024)
def frame_ancestors(website_url: str) -> str | None:
    """The frame-ancestors policy for a site's URL: its origin (scheme, host, port; a path
    or query would not match the page that frames us), or its host alone when the URL has
    no scheme ("shop.example.com", as people type it). None, with a warning once per URL,
    when it is neither: an unusable URL must not reach a header as it is."""
    source = _source(website_url.strip())
    if source is None:
        log.warning(
            "inbox website_url %r is not an http(s) URL or a host name; GET /widget can be"
            " framed by any site until it is fixed (e.g. https://shop.example.com)",
            website_url[:200],
        )
        return None
    return f"frame-ancestors 'self' {source}"


def _source(value: str) -> str | None:
    if not value or not value.isprintable():  # a newline would end the header
        return None
    try:
        url = URL(value if "://" in value else f"//{value}")
    except ValueError:
        return None
    if url.scheme not in ("", "http", "https") or url.user or url.password:
        return None
    host = url.raw_host  # IDNA-encoded
    if not host or not _HOST.fullmatch(host.lower()):
        return None
    port = f":{url.explicit_port}" if url.explicit_port is not None else ""
    scheme = f"{url.scheme}://" if url.scheme else ""
    return f"{scheme}{host.lower()}{port}"
