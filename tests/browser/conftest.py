"""Browser fixtures: a real `python -m server` (on SQLite and on PostgreSQL) and Debian's
headless Chromium driven by Playwright.

The browser is the system's /usr/bin/chromium (`.ci/run` installs it); the tests never
download one. Every wait is bounded by the page's default timeout."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import temp_pg_database
from tests.procs import Process, free_port, tokens_from_log

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 10_000  # the longest any single step may take
# Playwright's expect() waits 5 s by default, apart from the pages' timeout: the same bound
# for both (a loaded CI machine took longer than 5 s to show a conversation once).
playwright_sync.expect.set_options(timeout=WAIT_MS)


@dataclass
class DemoServer:
    url: str
    account_id: int
    website_token: str
    access_token: str
    process: Process


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo_server(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[DemoServer]:
    """`python -m server` exactly as a person starts it (demo data seeded on first start),
    on a free port, with its own data directory; once per database engine."""
    yield from _demo_server(request.param, tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def sqlite_demo_server(tmp_path_factory: Any) -> Iterator[DemoServer]:
    yield from _demo_server("sqlite", tmp_path_factory.mktemp("demo"))


def _demo_server(engine: str, data_dir: Path) -> Iterator[DemoServer]:
    pg = None
    if engine == "sqlite":
        database_url = f"sqlite+aiosqlite:///{data_dir / 'chat.db'}"
    else:
        pg = temp_pg_database()
        database_url = _run_async(pg.__aenter__())
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "REDIS_URL": "",
        "SEED_DEMO": "1",
        "LOG_LEVEL": "INFO",
        "PORT": str(free_port()),
    }
    proc = Process("server", env, data_dir / "server.log", ready="serving on")
    try:
        proc.start()
        log = proc.output()
        tokens = tokens_from_log(log)
        account = re.search(r"created demo data: account (\d+);", log)
        assert account, log
        yield DemoServer(
            proc.url, int(account.group(1)), tokens["website_token"], tokens["access_token"], proc
        )
    finally:
        proc.stop()
        if pg is not None:
            _run_async(pg.__aexit__(None, None, None))


def _run_async(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, on a thread of its own: Playwright's
    sync API keeps an event loop running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped on purpose: Playwright's sync API keeps an event loop running on the
    main thread while it is open, which would break every async test after it."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Pages:
    """Fresh browser contexts (so fresh localStorage: a new visitor, a signed-out agent)
    that report page errors, closed at the end of the test."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def new(self, width: int = 1000, height: int = 720) -> Any:
        context = self.browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def _open_pages(browser: Any) -> Iterator[Pages]:
    """Pages closed afterwards; any JavaScript error they logged fails the test."""
    p = Pages(browser)
    try:
        yield p
    finally:
        p.close()
    assert not p.errors, p.errors


@pytest.fixture
def pages(browser: Any) -> Iterator[Pages]:
    yield from _open_pages(browser)


@pytest.fixture(scope="module")
def console_pages(browser: Any) -> Iterator[Pages]:
    yield from _open_pages(browser)


@pytest.fixture(scope="module")
def agent(demo_server: DemoServer, console_pages: Pages) -> Any:
    """One signed-in console per server, left open across the module's tests the way an
    agent keeps it open all day: each test finds its own conversation in the list."""
    return open_console(console_pages.new(1100, 720), demo_server)


def open_widget(page: Any, server: DemoServer, *, open_panel: bool = True) -> Any:
    """The demo host page, with the widget connected to /cable and (unless `open_panel` is
    false) opened with its launcher: it starts closed, as Chatwoot's does."""
    page.goto(server.url + "/")
    page.wait_for_selector(".cw-root[data-connection=connected]")
    if open_panel and page.locator(".cw-root.cw-closed").count():
        page.click(".cw-launcher")
        page.wait_for_selector(".cw-input", state="visible")
    return page


def open_console(page: Any, server: DemoServer) -> Any:
    """The console, signed in with the demo agent's token and live on /cable."""
    page.goto(server.url + "/console")
    page.fill(".signin-token", server.access_token)
    page.click(".signin button")
    page.wait_for_selector(".connection[data-state=connected]")
    return page


def widget_conversation_id(page: Any) -> int:
    """The conversation the widget shows (its display id), once it has one."""
    page.wait_for_function("() => window.chatWidget && window.chatWidget.conv")
    return int(page.evaluate("() => window.chatWidget.conv.id"))


def cut_widget_socket(page: Any) -> None:
    """Take the widget's socket away (it stays away until `restore_widget_socket`), once it
    has had an event to resume from (a stream position)."""
    page.wait_for_function(
        "() => [...window.chatWidget.cable.subscriptions.values()].some(s => s.positions.size)"
    )
    page.evaluate("() => { const c = window.chatWidget.cable; c.stopped = true; c.ws.close(); }")
    page.wait_for_selector(".cw-root[data-connection=stopped]")


def restore_widget_socket(page: Any) -> None:
    page.evaluate("() => { const c = window.chatWidget.cable; c.stopped = false; c.connect(); }")
    page.wait_for_selector(".cw-root[data-connection=connected]")


def widget_auth_token(page: Any) -> str:
    return str(page.evaluate("() => window.chatWidget.token"))


def call(
    server: DemoServer,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One HTTP request to the server under test (stdlib only), its JSON answer back."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def agent_call(server: DemoServer, method: str, path: str, body: Any = None) -> Any:
    """The agent API of the demo account, as the demo agent."""
    return call(
        server,
        method,
        f"/api/v1/accounts/{server.account_id}{path}",
        body,
        {"api_access_token": server.access_token},
    )
