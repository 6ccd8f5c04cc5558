"""The JavaScript blocks of the docs, run in real Chromium against a real server.

Each block runs as a module script of its own page, served by the app under test, with
a short preamble defining what the page around it would (a token, a ``client``, an
``input``) and an epilogue reporting what happened to ``window.docResult``. Hosts the
docs write as ``wss://….example.com`` become this server (or a dead port); nothing else
in a block is changed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tempest_ws import WebSocketConnection, WebSocketHub
from tempest_ws.testing import serve
from tests.helpers.browser import PAGE_HTML, Chromium, wait_js
from tests.helpers.docs_blocks import doc_blocks
from tests.helpers.realtime_support import rooms_and_own_inbox
from tests.helpers.server_process import free_port
from tests.helpers.support import build_app, make_settings, token, ws_url

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

IMPORT = 'import { TempestWS } from "/ws/client.js";\n'
CLIENT = IMPORT + 'const client = new TempestWS("/ws", { token: "__TOKEN__" });\n'
REPORT = "const report = (value) => { window.docResult = value; };\n"

BLOCKS: dict[tuple[str, str], dict[str, Any] | list[dict[str, Any]]] = {
    (
        "docs/authentication.md",
        'const ws = new WebSocket("wss://api.example.com/ws", ["bearer", token]);',
    ): {
        "before": 'const token = "__TOKEN__";\n',
        "hosts": {"wss://api.example.com/ws": "__WS__"},
        "after": 'ws.onmessage = (e) => { if (JSON.parse(e.data).type === "hello") report({protocol: ws.protocol}); };',
        "expect": {"protocol": "bearer"},
    },
    ("docs/browser-client.md", 'import { TempestWS } from "/ws/client.js";'): [
        {"after": "report({type: typeof TempestWS});", "expect": {"type": "function"}},
        {  # the token-provider wiring, which starts with the same import
            "after": 'client.addEventListener("open", () => report({open: client.readyState, cached: cached !== null}));',
            "expect": {"open": 1, "cached": True},
        },
    ],
    ("docs/browser-client.md", 'import { TempestWS } from "/ws/client/tempest-ws.js";'): {
        # the modules, served under /ws/client/, connect as the one file does
        "after": 'const client = new TempestWS("/ws", { token: "__TOKEN__" });\n'
        'client.addEventListener("open", () => report({open: client.readyState, name: TempestWS.name}));',
        "expect": {"open": 1, "name": "TempestWS"},
    },
    ("docs/browser-client.md", "const client = new TempestWS(url, options);"): {
        "before": IMPORT + 'const url = "/ws";\nconst options = { token: "__TOKEN__" };\n',
        "after": 'client.addEventListener("open", () => report({open: client.readyState}));',
        "expect": {"open": 1},
    },
    (
        "docs/browser-client.md",
        'const nodes = ["wss://a.example.com/ws", "wss://b.example.com/ws"];',
    ): {
        "before": IMPORT + 'const options = { token: "__TOKEN__" };\n',
        "hosts": {"wss://a.example.com/ws": "__DEAD__", "wss://b.example.com/ws": "__WS__"},
        "after": 'client.addEventListener("open", () => report({connects}));',
        "expect": {"connects": 2},  # the dead node cost one attempt
    },
    ("docs/browser-client.md", "try {"): {
        "before": CLIENT
        + "let notAllowed = false;\nconst showNotAllowed = () => { notAllowed = true; };\n",
        "after": "report({notAllowed});",
        "expect": {"notAllowed": True},
    },
    (
        "docs/browser-client.md",
        'client.addEventListener("subscribeerror", ({ detail: { topic, error } }) => {',
    ): {
        "before": CLIENT
        + "const warned = [];\nconsole.warn = (text) => { warned.push(text); report({warned}); };\n",
        "after": 'client.subscribe("inbox:bob").catch(() => {});',
        "expect": {"warned": ["not subscribed to inbox:bob: forbidden"]},
    },
    ("docs/browser-client.md", 'await client.subscribe("room:lobby");'): {
        # bob, in another tab, gets alice's receipt (the sending connection does not)
        "before": CLIENT
        + 'const bob = new TempestWS("/ws", { token: "__BOB__" });\n'
        + 'await bob.subscribe("room:lobby");\n'
        + 'const input = document.body.appendChild(document.createElement("input"));\n'
        + 'bob.on("message", ({ detail }) => { if (detail.type === "receipt") report({members: [...members].sort(), receipt: detail.data}); });\n',
        "after": 'input.dispatchEvent(new Event("input"));\nwindow.blockReady = true;',
        "push": {"type": "chat.message", "data": {"id": "m-1", "text": "hi"}},
        "expect": {
            "members": ["alice", "bob"],
            "receipt": {
                "topic": "room:lobby",
                "user_id": "alice",
                "message_id": "m-1",
                "status": "read",
            },
        },
    },
}
"""Each block (a list: one per block with that first line, in page order): preamble, hosts
to point here, epilogue, what it must report."""


def _app(hub: WebSocketHub, pages: dict[str, str]) -> FastAPI:
    settings = make_settings()
    app, _ = build_app(
        settings, handler=_ignore, hub=hub, builtins=True, topic_authorizer=rooms_and_own_inbox
    )
    app.add_api_route("/", lambda: HTMLResponse(PAGE_HTML), include_in_schema=False)

    def block_page(n: int) -> HTMLResponse:
        return HTMLResponse(f'{PAGE_HTML}\n<script type="module">\n{pages[str(n)]}\n</script>\n')

    def refresh() -> dict[str, Any]:
        return {"access_token": token("alice"), "expires_in": 3600}

    app.add_api_route("/block/{n}", block_page, include_in_schema=False)
    app.add_api_route("/auth/refresh", refresh, methods=["POST"], include_in_schema=False)
    return app


async def _ignore(ws: Any, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    while True:
        await ws.receive_json()


def _compose(text: str, spec: dict[str, Any], here: str, dead: str) -> str:
    for doc_host, target in spec.get("hosts", {}).items():
        assert doc_host in text
        text = text.replace(doc_host, target)
    script = spec.get("before", "") + REPORT + text + spec.get("after", "")
    script = script.replace("__WS__", here).replace("__DEAD__", dead)
    return script.replace("__TOKEN__", token("alice")).replace("__BOB__", token("bob"))


async def test_every_js_block_runs_in_chromium(chromium: Chromium) -> None:
    hub = WebSocketHub(presence=True)
    pages: dict[str, str] = {}
    runs: list[tuple[str, dict[str, Any]]] = []
    async with serve(_app(hub, pages)) as base:
        here, dead = ws_url(base), f"ws://127.0.0.1:{free_port()}/ws"
        for (page_name, first), specs in BLOCKS.items():
            texts = doc_blocks(page_name, first)
            specs = specs if isinstance(specs, list) else [specs]
            assert len(texts) == len(specs), f"{page_name}: {first}"
            for text, spec in zip(texts, specs, strict=True):
                pages[str(len(runs))] = _compose(text, spec, here, dead)
                runs.append((f"{page_name}: {first}", spec))
        for n, (name, spec) in enumerate(runs):
            page = await chromium.new_page()
            console: list[str] = []
            page.on("console", lambda message, seen=console: seen.append(message.text))
            await page.goto(f"{base}/block/{n}")
            try:
                if "push" in spec:
                    await wait_js(page, "() => window.blockReady === true")
                    await hub.broadcast(spec["push"], topic="room:lobby")
                result = await wait_js(page, "() => window.docResult ?? null")
            except pytest.fail.Exception as exc:
                pytest.fail(f"{name}: {exc}\nconsole: {console}\nerrors: {chromium.page_errors}")
            assert result == spec["expect"], f"{name}: {json.dumps(result)}"
            await page.close()
    assert len(runs) == 9
