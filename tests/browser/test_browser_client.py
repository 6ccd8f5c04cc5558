"""The browser client ``tempest-ws.js`` in real headless Chromium against real uvicorn.

Each test serves an app on a free loopback port, opens a blank page of that origin,
imports the client from ``/ws/client.js`` (as an application page would) and drives it
with ``page.evaluate``. Every client records its events in ``window.logs[name]``;
the tests wait for events and for server-side state with bounded polls, never sleeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from tempest_ws import CLOSE_CODE_INFO, CloseCode, WebSocketConnection, WebSocketHub
from tempest_ws.testing import make_token, serve
from tests.helpers.browser import (
    CLIENT_FORMS,
    FAST,
    PAGE_HTML,
    Chromium,
    events,
    launch_chromium,
    make_client,
    open_page,
    wait_event,
    wait_js,
)
from tests.helpers.support import build_app, make_settings, token, until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

WAIT = 30.0
"""Bound, in seconds, of every server-side wait."""


def make_handler(received: list[tuple[str, str, Any]]) -> Any:
    """A handler with subscriptions, echo and request/response; logs what it receives."""

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        while True:
            message = await ws.receive_json()
            kind, data, rid = message["type"], message.get("data"), message.get("request_id")
            received.append((connection.user_key, kind, data))
            if kind == "subscribe":
                await hub.subscribe(connection.connection_id, data["topic"])
                # With its request_id: it settles the Promise client.subscribe() returns.
                await connection.send({"type": "subscribed", "data": data, "request_id": rid})
            elif kind == "unsubscribe":
                await hub.unsubscribe(connection.connection_id, data["topic"])
            elif kind == "echo":
                await connection.send({"type": "echo", "data": data, "request_id": rid})
            elif kind == "rpc.add":
                total = data["a"] + data["b"]
                await connection.send(
                    {"type": "rpc.result", "data": {"sum": total}, "request_id": rid}
                )
            elif kind == "rpc.fail":
                await connection.send(
                    {
                        "type": "error",
                        "data": {"code": "bad_input", "message": "cannot do that"},
                        "request_id": rid,
                    }
                )
            # "rpc.ignore" and anything else: no reply

    return handler


def client_app(**overrides: Any) -> tuple[FastAPI, WebSocketHub, list[tuple[str, str, Any]]]:
    """The test server: the router at /ws (client.js at /ws/client.js) and a blank page."""
    received: list[tuple[str, str, Any]] = []
    settings = make_settings(**overrides)
    app, hub = build_app(settings, handler=make_handler(received))
    app.add_api_route("/", lambda: HTMLResponse(PAGE_HTML), include_in_schema=False)
    app.state.settings = settings
    return app, hub, received


def subscriber_ids(hub: WebSocketHub, topic: str) -> set[str]:
    return {c.connection_id for c in hub.subscribers(topic)}


@pytest.fixture(params=CLIENT_FORMS)
async def chromium(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Chromium]:
    """Chromium running the one-file client, then the ES modules (see CLIENT_FORMS)."""
    async with launch_chromium(tmp_path, client=request.param) as browser:
        yield browser


async def test_connects_with_bearer_subprotocol_subscribes_receives_and_answers_pings(
    chromium: Chromium,
) -> None:
    # Query tokens are off: the only way in is the bearer subprotocol. Heartbeats are fast:
    # a client that did not answer pings would be closed 4408 after 2 s.
    app, hub, received = client_app(
        WS_ALLOW_QUERY_TOKEN=False, WS_HEARTBEAT_SECONDS=0.25, WS_HEARTBEAT_TIMEOUT_SECONDS=2.0
    )
    jwt = token("alice")
    async with serve(app, settings=app.state.settings) as base:
        page = await open_page(chromium, base)
        handshakes = await chromium.handshakes(page)
        await make_client(page, "c", options={"token": jwt})
        opened = await wait_event(page, "c", "open")
        assert opened[0]["detail"]["reconnected"] is False
        assert opened[0]["detail"]["hello"]["heartbeat_timeout_seconds"] == 2.0
        assert await page.evaluate("() => window.clients.c.protocol") == "bearer"
        await wait_js(page, "(n) => window.clients.c.readyState === 1")
        # What went over the wire, as Chromium's network layer saw it.
        await until(lambda: len(handshakes) == 1, WAIT)
        assert handshakes[0]["request"]["sec-websocket-protocol"] == f"bearer, {jwt}"
        assert handshakes[0]["response"]["sec-websocket-protocol"] == "bearer"

        (connection,) = hub.connections_of("alice")
        assert await page.evaluate("() => window.clients.c.connectionId") == (
            connection.connection_id
        )
        await page.evaluate("() => window.clients.c.subscribe('news')")
        await until(lambda: subscriber_ids(hub, "news") == {connection.connection_id}, WAIT)
        assert ("alice", "subscribe", {"topic": "news"}) in received

        assert await hub.broadcast({"type": "headline", "data": {"n": 1}}, topic="news") == 1
        message = await wait_event(page, "c", "message", "e.detail.type === 'headline'")
        assert message[0]["detail"] == {"type": "headline", "data": {"n": 1}, "request_id": None}

        # hello + pings keep coming for longer than the server's 2 s timeout: the client
        # answers every ping (the server would have closed 4408 otherwise).
        await until(lambda: connection.frames_sent >= 14, WAIT)
        assert connection.close_code is None
        assert hub.connections_of("alice") == [connection]
        assert await events(page, "c", "close") == []

        await page.evaluate("() => window.clients.c.close()")
        closed = await wait_event(page, "c", "close")
        assert closed[0]["detail"]["willReconnect"] is False
        assert await page.evaluate("() => window.clients.c.readyState") == 3
        await until(lambda: hub.connections_of("alice") == [], WAIT)
        assert connection.close_code == CloseCode.NORMAL


async def test_request_resolves_with_the_reply_carrying_its_request_id(
    chromium: Chromium,
) -> None:
    app, hub, received = client_app()
    async with serve(app, settings=app.state.settings) as base:
        page = await open_page(chromium, base)
        await make_client(page, "c", options={**FAST, "token": token("bob")})
        await wait_event(page, "c", "open")
        replies = await page.evaluate(
            """async () => {
              const c = window.clients.c;
              const results = await Promise.all([
                c.request("rpc.add", { a: 1, b: 2 }),
                c.request("rpc.add", { a: 10, b: 20 }),
                c.request("echo", { text: "hi" }),
              ]);
              const failure = await c.request("rpc.fail", {}).catch((e) => ({ name: e.name, code: e.code, message: e.message }));
              const timeout = await c.request("rpc.ignore", {}, { timeout: 300 }).catch((e) => e.code);
              return { results, failure, timeout };
            }"""
        )
        sums = [r["data"] for r in replies["results"][:2]]
        assert sums == [{"sum": 3}, {"sum": 30}]
        assert replies["results"][2]["type"] == "echo"
        assert replies["results"][2]["data"] == {"text": "hi"}
        sent_ids = [data for user, kind, data in received if kind == "rpc.add"]
        assert sent_ids == [{"a": 1, "b": 2}, {"a": 10, "b": 20}]
        ids = [r["request_id"] for r in replies["results"]]
        assert len(set(ids)) == 3
        assert all(isinstance(i, str) and i for i in ids)
        assert replies["failure"] == {
            "name": "TempestWSError",
            "code": "bad_input",
            "message": "cannot do that",
        }
        assert replies["timeout"] == "timeout"
        # Replies consumed by request() are not also delivered as "message" events.
        assert [e["detail"]["type"] for e in await events(page, "c", "message")] == []

        aborted = await page.evaluate(
            """() => { const control = new AbortController();
               const reply = window.clients.c.request("rpc.ignore", {}, { signal: control.signal });
               control.abort();
               return reply.catch((e) => e.code); }"""
        )
        assert aborted == "aborted"
        # No timeout (0); the server restarts the connection: the request fails at once.
        await page.evaluate(
            """() => { window.inflight = window.clients.c.request("rpc.ignore", {}, { timeout: 0 })
               .catch((e) => ({ code: e.code, closeCode: e.closeCode })); }"""
        )
        await until(lambda: [r[1] for r in received].count("rpc.ignore") == 3, WAIT)
        assert await hub.disconnect_user("bob", CloseCode.SERVICE_RESTART, "restart") == 1
        assert await page.evaluate("() => window.inflight") == {
            "code": "disconnected",
            "closeCode": 1012,
        }
        await wait_event(page, "c", "open", "e.detail.reconnected")
        closed = await page.evaluate(
            """async () => { const c = window.clients.c; c.close();
               return c.request("echo", {}).catch((e) => e.code); }"""
        )
        assert closed == "closed"


async def test_survives_a_server_restart_and_restores_its_subscription(
    chromium: Chromium,
) -> None:
    first_app, first_hub, _ = client_app()
    async with serve(first_app, settings=first_app.state.settings) as base:
        port = int(base.rsplit(":", 1)[1])
        page = await open_page(chromium, base)
        valid = token("carol")
        await make_client(page, "c", options=FAST, tokens=[valid])
        await wait_event(page, "c", "open")
        await page.evaluate("() => window.clients.c.subscribe('news')")
        await until(lambda: len(subscriber_ids(first_hub, "news")) == 1, WAIT)
    # The server is gone: the client sees the close and keeps trying (refused connections).
    await wait_event(page, "c", "close", "e.detail.willReconnect")
    await wait_event(page, "c", "reconnecting", count=2)

    second_app, second_hub, received = client_app()
    async with serve(second_app, settings=second_app.state.settings, port=port):
        opened = await wait_event(page, "c", "open", "e.detail.reconnected")
        new_id = opened[0]["detail"]["connectionId"]
        await until(lambda: subscriber_ids(second_hub, "news") == {new_id}, WAIT)
        assert ("carol", "subscribe", {"topic": "news"}) in received
        assert await second_hub.broadcast({"type": "after-restart", "data": {}}, topic="news") == 1
        await wait_event(page, "c", "message", "e.detail.type === 'after-restart'")
        requests = await page.evaluate("() => window.logs.c.tokenRequests")
        # The token provider ran before the first connect and again before reconnecting.
        assert requests[0]["reason"] == "connect"
        assert len(requests) >= 2
        assert {r["reason"] for r in requests[1:]} == {"reconnect"}
        await page.evaluate("() => window.clients.c.close()")


async def test_offline_then_online_reconnects_and_resubscribes(chromium: Chromium) -> None:
    # Chromium's offline emulation does not close an open WebSocket: it holds its frames
    # in both directions and fails new handshakes (1006). So the client notices through
    # silence detection (nothing for longer than the hello's heartbeat timeout), then
    # reconnects once the browser is back online.
    app, hub, _ = client_app(WS_HEARTBEAT_SECONDS=0.5, WS_HEARTBEAT_TIMEOUT_SECONDS=2.5)
    async with serve(app, settings=app.state.settings) as base:
        page = await open_page(chromium, base)
        await make_client(page, "c", options={**FAST, "token": token("dave")})
        opened = await wait_event(page, "c", "open")
        old_id = opened[0]["detail"]["connectionId"]
        await page.evaluate("() => window.clients.c.subscribe('alerts')")
        await until(lambda: subscriber_ids(hub, "alerts") == {old_id}, WAIT)

        await chromium.context.set_offline(True)
        assert await page.evaluate("() => navigator.onLine") is False
        silent = await wait_event(page, "c", "close", "e.detail.code === 4408")
        assert silent[0]["detail"]["reason"] == "server silent"
        assert silent[0]["detail"]["willReconnect"] is True
        # While offline, a new handshake fails.
        await wait_event(page, "c", "close", "e.detail.code === 1006")
        # The server timed the silent socket out on its side too.
        await until(lambda: hub.get(old_id) is None, WAIT)
        assert await page.evaluate("() => window.clients.c.readyState") == 0

        await chromium.context.set_offline(False)
        back = await wait_event(page, "c", "open", "e.detail.reconnected")
        new_id = back[0]["detail"]["connectionId"]
        assert new_id != old_id
        await until(lambda: subscriber_ids(hub, "alerts") == {new_id}, WAIT)
        assert await hub.broadcast({"type": "alert", "data": {"level": 1}}, topic="alerts") == 1
        await wait_event(page, "c", "message", "e.detail.type === 'alert'")
        await page.evaluate("() => window.clients.c.close()")


async def test_4401_calls_the_token_provider_again_and_gives_up_after_n(
    chromium: Chromium,
) -> None:
    app, hub, _ = client_app()
    async with serve(app, settings=app.state.settings) as base:
        page = await open_page(chromium, base)
        # Three bad tokens in a row: the client gives up with a clear, fatal error.
        wrong_key = make_token("eve", secret="another-secret-0123456789abcdef0123")
        bad = [token("eve", expires_in=-60), "not-a-jwt", wrong_key]
        await make_client(page, "bad", options={**FAST, "maxAuthFailures": 3}, tokens=bad)
        errors = await wait_event(page, "bad", "error", "e.detail.fatal")
        assert errors[0]["detail"]["code"] == "auth_failed"
        assert errors[0]["detail"]["closeCode"] == 4401
        assert "3 consecutive 4401" in errors[0]["detail"]["message"]
        requests = await page.evaluate("() => window.logs.bad.tokenRequests")
        assert [r["reason"] for r in requests] == ["connect", "unauthorized", "unauthorized"]
        assert [r["closeCode"] for r in requests] == [None, 4401, 4401]
        closes = await events(page, "bad", "close")
        assert [c["detail"]["code"] for c in closes] == [4401, 4401, 4401]
        assert [c["detail"]["willReconnect"] for c in closes] == [True, True, False]
        assert await events(page, "bad", "open") == []
        assert await page.evaluate("() => window.clients.bad.readyState") == 3

        # An expired token, then a fresh one from the provider: connected.
        refresh = [token("frank", expires_in=-60), token("frank")]
        await make_client(page, "refresh", options=FAST, tokens=refresh)
        await wait_event(page, "refresh", "open")
        requests = await page.evaluate("() => window.logs.refresh.tokenRequests")
        assert [r["reason"] for r in requests] == ["connect", "unauthorized"]
        assert [c["detail"]["code"] for c in await events(page, "refresh", "close")] == [4401]
        assert len(hub.connections_of("frank")) == 1
        assert hub.connections_of("eve") == []
        await page.evaluate("() => window.clients.refresh.close()")


async def test_offline_queue_is_bounded_and_flushed_in_order_after_connecting(
    chromium: Chromium,
) -> None:
    app, _hub, received = client_app()
    async with serve(app, settings=app.state.settings) as base:
        page = await open_page(chromium, base)
        jwt = token("grace")
        await make_client(
            page, "drop", options={"token": jwt, "startClosed": True, "maxEnqueuedMessages": 4}
        )
        state = await page.evaluate(
            """() => {
              const c = window.clients.drop;
              const sent = [1, 2, 3, 4, 5].map((n) => c.send("echo", { n }));
              window.reply = c.request("rpc.add", { a: 2, b: 3 });  // queued too
              return { sent, queued: c.queued, readyState: c.readyState };
            }"""
        )
        assert state == {"sent": [False] * 5, "queued": 4, "readyState": 3}
        warnings = await events(page, "drop", "warning")
        assert [w["detail"]["kind"] for w in warnings] == ["queue-overflow"] * 2
        assert [json.loads(w["detail"]["dropped"])["data"] for w in warnings] == [
            {"n": 1},
            {"n": 2},
        ]
        await page.evaluate("() => window.clients.drop.reconnect()")
        reply = await page.evaluate("() => window.reply")
        assert reply["data"] == {"sum": 5}
        await until(lambda: len([r for r in received if r[0] == "grace"]) == 4, WAIT)
        assert [(kind, data) for user, kind, data in received if user == "grace"] == [
            ("echo", {"n": 3}),
            ("echo", {"n": 4}),
            ("echo", {"n": 5}),
            ("rpc.add", {"a": 2, "b": 3}),
        ]

        await make_client(
            page,
            "strict",
            options={
                "token": jwt,
                "startClosed": True,
                "maxEnqueuedMessages": 2,
                "queueOverflow": "throw",
            },
        )
        outcome = await page.evaluate(
            """() => {
              const c = window.clients.strict;
              const attempt = (n) => { try { return c.send("echo", { n }); } catch (e) { return e.code; } };
              const results = [attempt(1), attempt(2), attempt(3)];
              c.close();
              results.push(attempt(4));
              return results;
            }"""
        )
        assert outcome == [False, False, "queue_full", "closed"]
        discarded = await events(page, "strict", "warning")
        assert [w["detail"] for w in discarded] == [{"kind": "queue-discarded", "count": 2}]
        await page.evaluate("() => window.clients.drop.close()")


def docs_policy_table() -> dict[int, tuple[str, str]]:
    """``{code: (name, policy)}`` from the close-code table of docs/browser-client.md."""
    text = (Path(__file__).parents[2] / "docs" / "browser-client.md").read_text()
    section = text.split("## Close-code policy", 1)[1].split("\n## ", 1)[0]
    rows: dict[int, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            rows[int(cells[0])] = (cells[1].strip("`"), cells[3].strip("`"))
    return rows


def policy_app() -> tuple[FastAPI, dict[str, Any]]:
    """A server that misbehaves on purpose, next to the real router (for client.js).

    ``/silent`` sends hello (promising a 1 s heartbeat timeout), a resync and one ping,
    then never sends again. ``/close/{code}`` sends hello and closes with ``code``.
    """
    app, _hub, _ = client_app()
    seen: dict[str, Any] = {"silent_connections": 0, "frames": [], "client_close_codes": []}

    async def accept(ws: WebSocket) -> None:
        offered = ws.scope.get("subprotocols", [])
        await ws.accept(subprotocol="bearer" if "bearer" in offered else None)

    @app.websocket("/silent")
    async def silent(ws: WebSocket) -> None:
        await accept(ws)
        seen["silent_connections"] += 1
        number = seen["silent_connections"]
        hello = {"connection_id": f"silent-{number}", "heartbeat_timeout_seconds": 1.0}
        await ws.send_json({"type": "hello", "data": hello, "request_id": None})
        await ws.send_json({"type": "resync", "data": {}, "request_id": None})
        await ws.send_json({"type": "ping", "data": {}, "request_id": f"p-{number}"})
        try:
            while True:
                seen["frames"].append(await ws.receive_json())
        except WebSocketDisconnect as exc:
            seen["client_close_codes"].append(exc.code)

    @app.websocket("/close/{code}")
    async def close_with(ws: WebSocket, code: int) -> None:
        await accept(ws)
        await ws.send_json({"type": "hello", "data": {}, "request_id": None})
        await ws.close(code)

    return app, seen


async def test_answers_pings_and_reconnects_when_the_server_goes_silent(
    chromium: Chromium,
) -> None:
    app, seen = policy_app()
    async with serve(app) as base:
        page = await open_page(chromium, base)
        await make_client(page, "c", url="/silent", options={**FAST, "token": token("heidi")})
        await wait_event(page, "c", "resync")
        dropped = await wait_event(page, "c", "close", "e.detail.code === 4408")
        assert dropped[0]["detail"] == {
            "code": 4408,
            "reason": "server silent",
            "wasClean": False,
            "willReconnect": True,
        }
        await wait_event(page, "c", "open", "e.detail.reconnected")
        await until(lambda: seen["silent_connections"] >= 2, WAIT)
        await until(lambda: 4408 in seen["client_close_codes"], WAIT)
        assert {"type": "pong", "data": {}, "request_id": "p-1"} in seen["frames"]
        await page.evaluate("() => window.clients.c.close()")


async def test_close_code_policy(chromium: Chromium) -> None:
    app, _ = policy_app()
    async with serve(app) as base:
        page = await open_page(chromium, base)
        # The JS table mirrors codes.py, and its policy agrees with CLOSE_CODE_INFO.
        table = await page.evaluate(
            """async () => {
              const m = await import("/ws/client.js");
              const codes = Object.entries(m.CloseCode);
              return {
                codes: Object.fromEntries(codes),
                byServer: Object.fromEntries(codes.map(([k, v]) => [v, m.closePolicy(v)])),
                byUser: m.closePolicy(1000, true),
                delays: [0, 1, 2, 10].map((n) => ["reconnect", "long"].map((kind) =>
                  [() => 0, () => 0.999999].map((random) => m.reconnectDelay(n, kind, {}, random)))),
              };
            }"""
        )
        assert table["codes"] == {name: code.value for name, code in CloseCode.__members__.items()}
        for code, info in CLOSE_CODE_INFO.items():
            policy = table["byServer"][str(code.value)]
            if code is CloseCode.NORMAL:
                assert policy == "reconnect"  # 1000 from the server: reconnect with backoff
            else:
                assert (policy != "stop") is info.reconnect, (code, policy)
        assert table["byServer"]["4401"] == "auth"
        assert table["byServer"]["4429"] == table["byServer"]["1013"] == "long"
        assert table["byUser"] == "stop"
        # The docs' policy table says the same.
        assert docs_policy_table() == {
            code.value: (code.name, table["byServer"][str(code.value)]) for code in CloseCode
        }
        # Backoff windows with the default options: [floor, min(cap, floor * 2 ** (n + 1))].
        assert table["delays"] == [
            [[1000, 2000], [5000, 10000]],
            [[1000, 4000], [5000, 20000]],
            [[1000, 8000], [5000, 40000]],
            [[1000, 30000], [5000, 120000]],
        ]

        # Real closes from a server, as Chromium reports them to the client.
        options = {
            "token": token("ivan"),
            "minReconnectionDelay": 100,
            "maxReconnectionDelay": 400,
            "longReconnectionDelay": 4000,
            "maxLongReconnectionDelay": 8000,
        }
        for code in (1013, 4429, 1012, 1001, 1011, 1000, 4403, 1008):
            await make_client(page, f"c{code}", url=f"/close/{code}", options=options)
        for code in (1013, 4429):
            scheduled = (await wait_event(page, f"c{code}", "reconnecting"))[0]
            assert scheduled["detail"]["code"] == code
            assert 4000 <= scheduled["detail"]["delay"] <= 8000, scheduled
        for code in (1012, 1001, 1011, 1000):
            scheduled = (await wait_event(page, f"c{code}", "reconnecting"))[0]
            assert scheduled["detail"]["code"] == code
            assert 100 <= scheduled["detail"]["delay"] <= 400, scheduled
        for code in (4403, 1008):
            (error,) = await wait_event(page, f"c{code}", "error")
            assert error["detail"]["fatal"] is True
            assert error["detail"]["code"] == "closed_by_server"
            assert error["detail"]["closeCode"] == code
            assert [
                c["detail"]["willReconnect"] for c in await events(page, f"c{code}", "close")
            ] == [False]
            assert await events(page, f"c{code}", "reconnecting") == []

        # Nothing listens at /nowhere: every handshake fails (1006) until maxRetries.
        await make_client(page, "lost", url="/nowhere", options={**options, "maxRetries": 2})
        (error,) = await wait_event(page, "lost", "error", "e.detail.fatal")
        assert error["detail"]["code"] == "max_retries"
        assert len(await events(page, "lost", "reconnecting")) == 2
        assert {c["detail"]["code"] for c in await events(page, "lost", "close")} == {1006}
        await page.evaluate("() => Object.values(window.clients).forEach((c) => c.close())")
