"""The demo pages: `/` (a host page with our own chat widget), `/console` (the agent
console) and the `/static/` files they load.

They exist so that someone who runs `python -m server` can watch the product work in two
browser tabs. Both pages are thin HTML shells: everything they do goes through the public
widget API, the agent API and `/cable`, exactly like any other client.
"""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from server.services import services
from server.store import accounts as accounts_store

STATIC_DIR = Path(__file__).parent / "static"


async def host_page(request: web.Request) -> web.Response:
    """A pretend company website with the widget in the corner. `?website_token=` picks
    another inbox; without it the first inbox of the database is used."""
    svc = services(request)
    token = request.query.get("website_token", "")
    if token:
        inbox = await svc.inboxes.get(token) if len(token) <= 128 else None
        if inbox is None:
            return _page(
                "Unknown inbox", _NO_INBOX.format(reason="No inbox has this website token."), 404
            )
    else:
        first = await svc.db.read(accounts_store.first_inbox_token)
        if first is None:
            return _page("No inbox yet", _NO_INBOX.format(reason="The database has no inbox."), 404)
        token = first
    body = _HOST_BODY.format(token=html.escape(token, quote=True))
    return _page("Acme Coffee Roasters", body, css=("demo.css", "widget.css"), script="demo.js")


async def console_page(request: web.Request) -> web.Response:
    """The agent console shell; console.js signs in with an access token and does the rest."""
    return _page(
        "Agent console",
        '<div id="console" class="console"></div>',
        css=("console.css", "console-visitor.css"),
        script="console.js",
    )


def _page(
    title: str,
    body: str,
    status: int = 200,
    *,
    css: tuple[str, ...] = ("demo.css",),
    script: str | None = None,
) -> web.Response:
    links = "".join(f'<link rel="stylesheet" href="/static/{name}">\n' for name in css)
    tag = f'<script type="module" src="/static/{script}"></script>\n' if script else ""
    text = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
{links}</head>
<body>
{body}
{tag}</body>
</html>
"""
    response = web.Response(text=text, content_type="text/html", status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


_NO_INBOX = """<main class="demo-empty">
<h1>Nothing to show yet</h1>
<p>{reason}</p>
<p>Start the server with <code>SEED_DEMO=1</code> (the default) on an empty database, or create
an inbox with <code>python -m server admin create-inbox --account 1 --name Site</code>
and open <code>/?website_token=...</code>.</p>
</main>"""

_HOST_BODY = """<header class="demo-nav">
  <strong>Acme Coffee Roasters</strong>
  <nav><a href="#">Shop</a> <a href="#">Subscriptions</a> <a href="#">About</a></nav>
</header>
<main class="demo-hero">
  <h1>Freshly roasted, shipped the same day.</h1>
  <p>This is a demo host page. The chat widget in the corner talks to this server through the
  public widget API and <code>/cable</code>, just like Chatwoot's widget would.</p>
  <p>Open <a href="/console" target="_blank">the agent console</a> in another window to answer.</p>
</main>
<div id="chat-widget" data-website-token="{token}"></div>"""


def add_routes(app: web.Application) -> None:
    """`/`, `/console` and `/static/` (the widget's iframe page, GET /widget, loads its
    script and stylesheet from there too)."""
    app.router.add_get("/", host_page)
    app.router.add_get("/console", console_page)
    app.router.add_static("/static/", STATIC_DIR, name="static")
