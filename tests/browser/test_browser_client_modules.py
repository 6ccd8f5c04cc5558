"""The browser client as ES modules from ``{path}/client/``, in real Chromium against uvicorn.

A page imports ``/ws/client/tempest-ws.js`` itself (no shim, no build): Chromium fetches
the entry and every module it imports from the router, connects with a bearer token and
receives a broadcast. Each module arrives with the headers the one file has. The one file
at ``/ws/client.js`` and the modules export the same names and values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.responses import HTMLResponse

from tempest_ws.testing import serve
from tests.helpers.browser import PAGE_HTML, Chromium, pretty, wait_js
from tests.helpers.support import build_app, make_settings, token, until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

WAIT = 30.0
"""Bound, in seconds, of every server-side wait."""

MODULES = Path(__file__).parents[2] / "tempest_ws" / "static" / "client"

CONNECT = """
async (jwt) => {
  window.log = [];
  const { TempestWS, ReadyState } = await import("/ws/client/tempest-ws.js");
  const client = new TempestWS("/ws", { token: jwt });
  window.client = client;
  for (const type of ["open", "message", "close", "error", "warning"]) {
    client.addEventListener(type, (event) => window.log.push({ type, detail: event.detail }));
  }
  client.subscribe("news").catch(() => {});  // this handler answers without a request_id
  return ReadyState.OPEN;
}
"""

SURFACE = """
async (url) => {
  const m = await import(url);
  const members = Object.getOwnPropertyNames(m.TempestWS.prototype);
  return {
    exports: Object.keys(m).sort(),
    codes: m.CloseCode,
    states: m.ReadyState,
    options: Object.keys(m.DEFAULT_OPTIONS),
    members,
    isDefault: m.default === m.TempestWS,
    policy: [1000, 1002, 1013, 4401, 4403, 4429].map((code) => m.closePolicy(code)),
    delay: m.reconnectDelay(3, "long", {}, () => 0.5),
    refresh: m.refreshDelay(60000),
    error: new m.TempestWSError("m", { code: "c" }).name,
  };
}
"""


def client_app() -> Any:
    settings = make_settings()
    app, hub = build_app(settings)
    app.add_api_route("/", lambda: HTMLResponse(PAGE_HTML), include_in_schema=False)
    return app, hub, settings


async def test_a_page_imports_the_modules_from_the_client_folder_and_connects(
    chromium: Chromium,
) -> None:
    app, hub, settings = client_app()
    async with serve(app, settings=settings) as base:
        page = await chromium.new_page()
        fetched: list[Any] = []
        page.on("response", lambda response: fetched.append(response))
        await page.goto(base + "/")
        open_state = await page.evaluate(CONNECT, token("alice"))
        opened = await wait_js(page, "() => window.log.find((e) => e.type === 'open')")
        (connection,) = hub.connections_of("alice")
        assert opened["detail"]["connectionId"] == connection.connection_id
        assert await page.evaluate("() => window.client.readyState") == open_state == 1
        assert await page.evaluate("() => window.client.protocol") == "bearer"

        await until(lambda: len(hub.subscribers("news")) == 1, WAIT)
        assert await hub.broadcast({"type": "headline", "data": {"n": 1}}, topic="news") == 1
        message = await wait_js(
            page,
            "() => window.log.find((e) => e.type === 'message' && e.detail.type === 'headline')",
        )
        assert message["detail"] == {"type": "headline", "data": {"n": 1}, "request_id": None}
        logged = await page.evaluate("() => window.log.map((e) => e.type)")
        assert "error" not in logged, pretty(await page.evaluate("() => window.log"))
        assert "warning" not in logged

        # Chromium fetched the entry and, through its imports, every module
        # from the router, with the headers of the one file; and never the one file.
        scripts = {
            response.url.removeprefix(base): response
            for response in fetched
            if "/ws/client" in response.url
        }
        expected = {f"/ws/client/{path.name}" for path in MODULES.glob("*.js")}
        assert set(scripts) == expected
        for url, response in scripts.items():
            assert response.status == 200, url
            headers = await response.all_headers()
            assert headers["content-type"] == "text/javascript; charset=utf-8", url
            assert headers["cache-control"] == "no-cache", url
            assert await response.body() == (MODULES / url.rsplit("/", 1)[1]).read_bytes()

        await page.evaluate("() => window.client.close()")
        await until(lambda: hub.connections_of("alice") == [], WAIT)


async def test_the_one_file_and_the_modules_export_the_same_names_and_values(
    chromium: Chromium,
) -> None:
    app, _, settings = client_app()
    async with serve(app, settings=settings) as base:
        page = await chromium.new_page(base + "/")
        one_file = await page.evaluate(SURFACE, "/ws/client.js")
        modules = await page.evaluate(SURFACE, "/ws/client/tempest-ws.js")
    assert one_file == modules
    assert "TempestWS" in one_file["exports"]
    assert one_file["isDefault"] is True
    assert one_file["error"] == "TempestWSError"
