"""Real headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright.

Playwright's Python API drives the system browser through ``executable_path``; no browser
is ever downloaded. Each test gets a fresh profile directory, and every uncaught page
error fails the test at teardown. Waits are bounded polls (``wait_js``), never sleeps.

A test takes the ``chromium`` fixture (``tests/conftest.py``, built on
`launch_chromium()`). For the browser client ``tempest-ws.js``: `open_page()` opens a
page of the server's origin with `HARNESS` installed, `make_client()` creates a client
that logs its events, and `wait_event()` / `events()` read that log.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.support import require_tool

CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Flags for a quiet, deterministic headless browser that talks only to loopback."""

WAIT_MS = 30_000
"""Bound of every browser-side wait: generous, for a loaded two-core machine."""

PAGE_HTML = "<!doctype html><meta charset=utf-8><title>tempest_ws test page</title>"
"""A blank same-origin page to import ``/ws/client.js`` into."""

CLIENT_FORMS = ("file", "modules")
"""The two forms of the browser client the router serves: ``file``, the one file at
``{path}/client.js``; ``modules``, the ES modules under ``{path}/client/``."""

MODULES_SHIM = (
    'export * from "./client/tempest-ws.js";\nexport { default } from "./client/tempest-ws.js";\n'
)
"""What a page gets for ``…/client.js`` in the ``modules`` form: the modules' entry, which
the browser fetches (with its siblings) from the server under test."""


class Chromium:
    """One browser context (fresh profile) and the pages opened in it.

    Attributes:
        context: the Playwright ``BrowserContext``.
        page_errors: uncaught exceptions thrown by any page, as text.
    """

    def __init__(self, context: Any) -> None:
        self.context = context
        self.page_errors: list[str] = []

    async def new_page(self, url: str | None = None) -> Any:
        """Open a page (optionally at ``url``) whose uncaught errors are recorded."""
        page = await self.context.new_page()
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        if url is not None:
            await page.goto(url)
        return page

    async def handshakes(self, page: Any) -> list[dict[str, dict[str, str]]]:
        """Start recording the WebSocket handshakes of ``page`` through CDP.

        Returns a list that fills with ``{"request": headers, "response": headers}``
        (header names lower-cased) as handshakes complete.
        """
        session = await self.context.new_cdp_session(page)
        pending: dict[str, dict[str, str]] = {}
        done: list[dict[str, dict[str, str]]] = []

        def lower(headers: dict[str, str]) -> dict[str, str]:
            return {k.lower(): v for k, v in headers.items()}

        def on_request(params: dict[str, Any]) -> None:
            pending[params["requestId"]] = lower(params["request"]["headers"])

        def on_response(params: dict[str, Any]) -> None:
            request = pending.pop(params["requestId"], {})
            done.append({"request": request, "response": lower(params["response"]["headers"])})

        session.on("Network.webSocketWillSendHandshakeRequest", on_request)
        session.on("Network.webSocketHandshakeResponseReceived", on_response)
        await session.send("Network.enable")
        return done


@contextlib.asynccontextmanager
async def launch_chromium(tmp_path: Path, *, client: str = "file") -> AsyncIterator[Chromium]:
    """Launch ``/usr/bin/chromium`` headless with a fresh profile under ``tmp_path``.

    Skips (or fails under ``TEMPEST_WS_REQUIRE_TOOLS``/CI) when chromium is missing.
    Fails the test if any page threw an uncaught error. With ``client="modules"``, a
    page's import of ``…/client.js`` gets ``MODULES_SHIM`` instead of the one file, so the
    page runs the ES modules its server serves under ``…/client/``, unchanged.
    """
    if client not in CLIENT_FORMS:
        raise ValueError(f"client must be one of {CLIENT_FORMS}")
    executable = require_tool("chromium")
    async_api = pytest.importorskip("playwright.async_api")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    async with async_api.async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=False,  # "--headless=new" below: the real browser, without a display
            args=list(CHROMIUM_ARGS),
            timeout=WAIT_MS * 2,
        )
        context.set_default_timeout(WAIT_MS)
        if client == "modules":
            await context.route(re.compile(r"/client\.js$"), _serve_modules_shim)
        browser = Chromium(context)
        try:
            yield browser
        finally:
            await context.close()
        assert browser.page_errors == [], f"uncaught page errors: {browser.page_errors}"


async def _serve_modules_shim(route: Any) -> None:
    await route.fulfill(status=200, content_type="text/javascript", body=MODULES_SHIM)


async def wait_js(page: Any, expression: str, arg: Any = None, *, timeout: float = WAIT_MS) -> Any:
    """Poll the JS function ``expression`` (a ``(arg) => ...`` source) until truthy.

    Returns its value (JSON-decoded). Fails with the page's ``window.log`` (when the page
    keeps one) so a timeout says what the client saw.
    """
    try:
        handle = await page.wait_for_function(expression, arg=arg, polling=50, timeout=timeout)
    except Exception as exc:
        seen = await page.evaluate("() => JSON.stringify(window.log ?? null)")
        pytest.fail(f"timed out waiting for {expression}: {exc!r}\nwindow.log = {seen}")
    return await handle.json_value()


def pretty(value: Any) -> str:
    """Compact JSON for assertion messages."""
    return json.dumps(value, default=str)[:4000]


FAST = {"minReconnectionDelay": 100, "maxReconnectionDelay": 800}
"""Short backoff so reconnects happen within a test (the policy is unchanged)."""


HARNESS = """
() => {
  window.logs = {};
  window.clients = {};
  window.log = window.logs;  // what wait_js prints on a timeout
  window.unhandled = [];
  window.addEventListener("unhandledrejection", (event) => window.unhandled.push(String(event.reason)));
  const plain = (detail) => {
    if (detail && detail.error instanceof Error) {
      const { error: e, ...rest } = detail;
      return { ...rest, code: e.code, closeCode: e.closeCode ?? null, message: e.message };
    }
    return detail;
  };
  window.makeClient = async (name, url, options = {}, tokens = null) => {
    const { TempestWS } = await import("/ws/client.js");
    const log = (window.logs[name] = { events: [], tokenRequests: [] });
    const opts = { ...options };
    if (tokens) {
      // Each call takes the next entry; a path ("/token/...") is fetched for a fresh token.
      opts.tokenProvider = async (request) => {
        log.tokenRequests.push(request);
        const next = tokens[Math.min(log.tokenRequests.length, tokens.length) - 1];
        return next.startsWith("/") ? (await fetch(next)).text() : next;
      };
    }
    const client = new TempestWS(url, opts);
    const types = ["open", "close", "message", "resync", "recovery", "reconnecting", "error", "warning", "tokenrefresh", "subscribeerror"];
    for (const type of types) {
      client.addEventListener(type, (event) => log.events.push({ type, detail: plain(event.detail) }));
    }
    window.clients[name] = client;
    return true;
  };
}
"""


def _events_js(name: str, kind: str, where: str = "true", count: int = 1) -> str:
    """JS polling function: the events of client ``name`` of ``kind`` matching ``where``."""
    name_js, kind_js = json.dumps(name), json.dumps(kind)
    return (
        f"() => {{ const found = window.logs[{name_js}].events"
        f".filter((e) => e.type === {kind_js} && ({where}));"
        f" return found.length >= {count} && found; }}"
    )


async def wait_event(
    page: Any, name: str, kind: str, where: str = "true", count: int = 1
) -> list[dict[str, Any]]:
    """Wait until client ``name`` logged ``count`` ``kind`` events matching ``where``.

    ``where`` is a JS expression over ``e`` (``e.detail`` is the event's detail).
    """
    found: list[dict[str, Any]] = await wait_js(page, _events_js(name, kind, where, count))
    return found


async def events(page: Any, name: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Everything client ``name`` logged so far (optionally of one ``kind``)."""
    logged: list[dict[str, Any]] = await page.evaluate("(name) => window.logs[name].events", name)
    return [e for e in logged if kind is None or e["type"] == kind]


async def open_page(chromium: Chromium, base: str) -> Any:
    """A page of the server's origin with the client harness installed."""
    page = await chromium.new_page(base + "/")
    await page.evaluate(HARNESS)
    return page


async def make_client(
    page: Any,
    name: str,
    url: str = "/ws",
    options: dict[str, Any] | None = None,
    tokens: list[str] | None = None,
) -> None:
    """Create ``window.clients[name]``: a fixed-token client, or one with a provider
    returning ``tokens`` in turn (the last one again once they run out); an entry that is
    a path (``/token/...``) is fetched from the page's origin when its turn comes."""
    await page.evaluate(
        "([n, u, o, t]) => window.makeClient(n, u, o, t)", [name, url, options or {}, tokens]
    )
