"""The browser client against the real router's built-ins and token lifetime, in Chromium.

One real uvicorn server runs ``make_websocket_router(builtins=True)`` with a topic
authorizer, topic presence and expiry enforcement (``WS_JWT_LEEWAY_SECONDS=0``). Its
``GET /token/{user}?ttl=s`` signs a fresh JWT, so a page's token provider gets tokens
whose lifetime starts when it asks, as a real refresh endpoint would. Waits are bounded
polls on the client's logged events, never sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse, PlainTextResponse

from tempest_ws import (
    CloseCode,
    WebSocketConnection,
    WebSocketHub,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.router._expiry import token_expiry
from tempest_ws.testing import serve
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
from tests.helpers.support import make_settings, token, until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

WAIT = 30.0
"""Bound, in seconds, of every server-side wait."""


class Server:
    """The app, its hub, and the topics its authorizer refuses (changeable mid-test)."""

    def __init__(self) -> None:
        self.settings = make_settings(WS_JWT_LEEWAY_SECONDS=0, WS_ENFORCE_TOKEN_EXPIRY=True)
        self.denied: set[str] = set()
        self.hub = WebSocketHub.from_settings(
            self.settings, presence=lambda topic: topic.startswith("room:")
        )

        async def handler(ws: WebSocket, connection: WebSocketConnection, hub: Any) -> None:
            while True:
                await ws.receive_json()  # built-ins never reach it; nothing else is sent

        def authorize(connection: WebSocketConnection, topic: str) -> bool:
            return not topic.startswith("secret:") and topic not in self.denied

        self.app = FastAPI()
        self.app.include_router(
            make_websocket_router(
                handler,
                hub=self.hub,
                bearer_resolver=jwt_bearer_resolver(self.settings),
                settings=self.settings,
                builtins=True,
                topic_authorizer=authorize,
            )
        )
        self.app.add_api_route("/", lambda: HTMLResponse(PAGE_HTML), include_in_schema=False)

        def issue(user: str, ttl: float = 300.0) -> PlainTextResponse:
            return PlainTextResponse(token(user, expires_in=ttl))

        self.app.add_api_route("/token/{user}", issue, include_in_schema=False)

    def ids(self, user: str) -> list[str]:
        return [c.connection_id for c in self.hub.connections_of(user)]


@pytest.fixture(params=CLIENT_FORMS)
async def chromium(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Chromium]:
    """Chromium running the one-file client, then the ES modules (see CLIENT_FORMS)."""
    async with launch_chromium(tmp_path, client=request.param) as browser:
        yield browser


def serve_app(server: Server) -> Any:
    return serve(server.app, settings=server.settings)


async def no_unhandled_rejections(page: Any) -> None:
    assert await page.evaluate("() => window.unhandled") == []


async def test_token_helpers_and_option_bounds(chromium: Chromium) -> None:
    server = Server()
    jwt = token("ann", expires_in=120)
    string_exp = token("ann", claims={"exp": "1796587942"})
    async with serve_app(server) as base:
        page = await open_page(chromium, base)
        result = await page.evaluate(
            """async ([jwt, stringExp]) => {
              const m = await import("/ws/client.js");
              const bad = (margin) => { try { new m.TempestWS("/ws", { startClosed: true, tokenRefreshMargin: margin }); return null; } catch (e) { return e.name; } };
              return {
                exp: m.tokenExpiry(jwt),
                stringExp: m.tokenExpiry(stringExp),
                opaque: [m.tokenExpiry("opaque-token"), m.tokenExpiry("a.b.c"), m.tokenExpiry("a.eyJzdWIiOiJ4In0.c"), m.tokenExpiry(null)],
                delays: [m.refreshDelay(120000, 30000), m.refreshDelay(10000, 30000), m.refreshDelay(10000, 0), m.refreshDelay(0, 30000), m.refreshDelay(-5, 30000)],
                defaultMargin: m.DEFAULT_OPTIONS.tokenRefreshMargin,
                bounds: [bad(-1), bad(25 * 3600 * 1000), bad("30s"), bad(null), bad(0)],
              };
            }""",
            [jwt, string_exp],
        )
    assert result["exp"] == token_expiry(jwt) * 1000
    assert result["stringExp"] == 1796587942 * 1000
    assert result["opaque"] == [None, None, None, None]  # the third is a JWT without exp
    assert result["delays"] == [90000, 5000, 10000, None, None]
    assert result["defaultMargin"] == 30000
    assert result["bounds"] == ["RangeError", "RangeError", "RangeError", None, None]


async def test_refreshes_in_band_before_exp_and_outlives_the_first_token(
    chromium: Chromium,
) -> None:
    server = Server()
    async with serve_app(server) as base:
        page = await open_page(chromium, base)
        # 2-3 s, then 3-4 s of life (exp is whole seconds), then a long one: two refreshes.
        tokens = ["/token/ann?ttl=3", "/token/ann?ttl=4", "/token/ann?ttl=300"]
        await make_client(page, "c", options=FAST, tokens=tokens)
        opened = await wait_event(page, "c", "open")
        first_id = opened[0]["detail"]["connectionId"]
        await page.evaluate("() => window.clients.c.subscribe('room:a')")
        first_exp = await page.evaluate("() => window.clients.c.tokenExpiresAt")
        assert isinstance(first_exp, (int, float))

        refreshed = await wait_event(page, "c", "tokenrefresh", count=2)
        second_exp, third_exp = (r["detail"]["expiresAt"] for r in refreshed[:2])
        assert first_exp < second_exp < third_exp
        # Past the second token's exp (the server would have closed 4401 by now), same
        # connection: it answers a built-in, still subscribed, never closed.
        await wait_js(page, "(exp) => Date.now() > exp + 500", second_exp)
        users = await page.evaluate("() => window.clients.c.presence('room:a')")
        assert users == ["ann"]
        assert await page.evaluate("() => window.clients.c.connectionId") == first_id
        assert server.ids("ann") == [first_id]
        assert await events(page, "c", "close") == []
        assert await events(page, "c", "reconnecting") == []
        assert await page.evaluate("() => window.clients.c.tokenExpiresAt") == third_exp
        requests = await page.evaluate("() => window.logs.c.tokenRequests")
        assert [r["reason"] for r in requests] == ["connect", "refresh", "refresh"]
        subscribes = [e for e in await events(page, "c", "message") if e["detail"]["type"] == "ack"]
        assert len(subscribes) == 1  # no resubscribe

        # refreshToken() on demand, shared by concurrent callers.
        both = await page.evaluate(
            """async () => { const c = window.clients.c;
               return Promise.all([c.refreshToken(), c.refreshToken()]); }"""
        )
        assert both[0] == both[1] >= third_exp
        assert len(await page.evaluate("() => window.logs.c.tokenRequests")) == 4
        await page.evaluate("() => window.clients.c.close()")

        # A provider that hands out its cached token again: acked, no later expiry, so
        # the client warns and stops refreshing instead of looping.
        cached = token("ann", expires_in=120)
        await make_client(page, "cached", options=FAST, tokens=[cached])
        await wait_event(page, "cached", "open")
        same = await page.evaluate("() => window.clients.cached.refreshToken()")
        assert same == token_expiry(cached) * 1000
        (warning,) = await wait_event(page, "cached", "warning")
        assert warning["detail"] == {"kind": "token-not-renewed", "expiresAt": same}
        await page.evaluate("() => window.clients.cached.close()")
        await no_unhandled_rejections(page)


async def test_without_a_provider_the_expired_connection_gets_4401(chromium: Chromium) -> None:
    server = Server()
    async with serve_app(server) as base:
        page = await open_page(chromium, base)
        short = token("bea", expires_in=4)
        await make_client(page, "fixed", options={**FAST, "token": short, "maxAuthFailures": 2})
        await wait_event(page, "fixed", "open")
        assert await page.evaluate("() => window.clients.fixed.tokenExpiresAt") is not None
        closed = await wait_event(page, "fixed", "close", "e.detail.code === 4401")
        assert closed[0]["detail"]["reason"] == "token expired"
        # The same expired token again: refused at the handshake, then the client gives up.
        error = await wait_event(page, "fixed", "error", "e.detail.fatal")
        assert error[0]["detail"]["code"] == "auth_failed"
        assert await events(page, "fixed", "tokenrefresh") == []
        no_provider = await page.evaluate(
            "() => window.clients.fixed.refreshToken().catch((e) => e.code)"
        )
        assert no_provider == "no_token_provider"


async def test_a_refused_refresh_closes_4401_and_reconnects_through_the_provider(
    chromium: Chromium,
) -> None:
    server = Server()
    async with serve_app(server) as base:
        page = await open_page(chromium, base)
        # The refresh brings another user's token: the server closes 4401; the provider
        # is asked again ("unauthorized") and the client reconnects and resubscribes.
        tokens = ["/token/cid?ttl=3", "/token/mallory?ttl=300", "/token/cid?ttl=300"]
        await make_client(page, "c", options=FAST, tokens=tokens)
        opened = await wait_event(page, "c", "open")
        await page.evaluate("() => window.clients.c.subscribe('room:a')")
        closed = await wait_event(page, "c", "close", "e.detail.code === 4401")
        assert closed[0]["detail"]["reason"] == "token subject changed"
        assert closed[0]["detail"]["willReconnect"] is True
        back = await wait_event(page, "c", "open", "e.detail.reconnected")
        new_id = back[0]["detail"]["connectionId"]
        assert new_id != opened[0]["detail"]["connectionId"]
        await until(
            lambda: {c.connection_id for c in server.hub.subscribers("room:a")} == {new_id}, WAIT
        )
        requests = await page.evaluate("() => window.logs.c.tokenRequests")
        assert [r["reason"] for r in requests] == ["connect", "refresh", "unauthorized"]
        assert await events(page, "c", "tokenrefresh") == []
        assert await events(page, "c", "error") == []  # a 4401, not an error
        assert server.ids("mallory") == []
        await page.evaluate("() => window.clients.c.close()")
        await no_unhandled_rejections(page)


async def test_presence_typing_and_receipt_helpers(chromium: Chromium) -> None:
    server = Server()
    async with serve_app(server) as base:
        page = await open_page(chromium, base)
        await make_client(page, "ann", options={**FAST, "token": token("ann")})
        await make_client(page, "bob", options={**FAST, "token": token("bob")})
        await wait_event(page, "ann", "open")
        await wait_event(page, "bob", "open")
        result = await page.evaluate(
            """async () => {
              const { ann, bob } = window.clients;
              const code = (promise) => promise.then(() => "resolved", (e) => `${e.name}:${e.code}`);
              const ack = await ann.subscribe("room:a");
              await bob.subscribe("room:a");
              await ann.subscribe("plain:x");
              return {
                ack,
                users: await ann.presence("room:a"),
                typing: (await ann.typing("room:a")).data,
                stopped: (await ann.typing("room:a", false)).data,
                receipt: (await ann.receipt("room:a", 42, "read")).data,
                notSubscribed: await code(ann.presence("room:b")),
                typingElsewhere: await code(ann.typing("room:b")),
                disabled: await code(ann.presence("plain:x")),
                invalid: await code(ann.receipt("room:a", "m-1", "READ")),
                badTopic: (() => { try { ann.presence(""); return null; } catch (e) { return e.name; } })(),
              };
            }"""
        )
        assert result["ack"]["type"] == "ack"
        assert result["ack"]["data"] == {"type": "subscribe", "topic": "room:a"}
        assert result["users"] == ["ann", "bob"]
        assert result["typing"] == {"type": "typing", "topic": "room:a"}
        assert result["stopped"] == {"type": "typing", "topic": "room:a"}
        assert result["receipt"] == {"type": "receipt", "topic": "room:a"}
        assert result["notSubscribed"] == "TempestWSError:not_subscribed"
        assert result["typingElsewhere"] == "TempestWSError:not_subscribed"
        assert result["disabled"] == "TempestWSError:presence_disabled"
        assert result["invalid"] == "TempestWSError:invalid_data"
        assert result["badTopic"] == "TypeError"
        # bob got the relays: typing true, then false, then the receipt.
        relayed = await wait_event(
            page, "bob", "message", "['typing', 'receipt'].includes(e.detail.type)", count=3
        )
        assert [r["detail"]["data"] for r in relayed[:3]] == [
            {"topic": "room:a", "user_id": "ann", "typing": True},
            {"topic": "room:a", "user_id": "ann", "typing": False},
            {"topic": "room:a", "user_id": "ann", "message_id": 42, "status": "read"},
        ]
        await page.evaluate("() => Object.values(window.clients).forEach((c) => c.close())")
        await no_unhandled_rejections(page)


async def test_subscribe_denials_reject_and_surface_as_events(chromium: Chromium) -> None:
    server = Server()
    async with serve_app(server) as base:
        page = await open_page(chromium, base)
        await make_client(page, "c", options={**FAST, "token": token("dan")})
        await wait_event(page, "c", "open")
        connected = await page.evaluate(
            """async () => {
              const c = window.clients.c;
              const denied = await c.subscribe("secret:x").catch((e) => ({ name: e.name, code: e.code, topic: e.envelope.data.topic }));
              return { denied, subscriptions: c.subscriptions };
            }"""
        )
        assert connected == {
            "denied": {"name": "TempestWSError", "code": "forbidden", "topic": "secret:x"},
            "subscriptions": [],
        }
        (event,) = await events(page, "c", "subscribeerror")
        assert event["detail"]["topic"] == "secret:x"
        assert event["detail"]["code"] == "forbidden"
        # The answer still arrives as a message event, as before subscribe() returned it.
        await wait_event(page, "c", "message", "e.detail.type === 'error'")

        # Subscribe, unsubscribe, subscribe again at once: the second Promise is settled by
        # the answer to the second subscribe, not by the first one's ack arriving earlier.
        again = await page.evaluate(
            """async () => { const c = window.clients.c;
               const first = c.subscribe("room:q").catch((e) => e.code);
               c.unsubscribe("room:q");
               const second = await c.subscribe("room:q");
               return { first: await first, second: second.request_id };
            }"""
        )
        acks = await wait_event(
            page, "c", "message", "e.detail.type === 'ack' && e.detail.data.type === 'subscribe'", 2
        )
        assert again == {"first": "unsubscribed", "second": acks[-1]["detail"]["request_id"]}
        assert acks[0]["detail"]["request_id"] != acks[-1]["detail"]["request_id"]

        # Fire-and-forget on an open client: the denial is an event, not an unhandled rejection.
        await page.evaluate("() => { window.clients.c.subscribe('secret:y'); }")
        await wait_event(page, "c", "subscribeerror", "e.detail.topic === 'secret:y'")

        # Not connected yet: remembered, sent after the hello; the denial comes later.
        await make_client(
            page, "late", options={**FAST, "token": token("eva"), "startClosed": True}
        )
        await page.evaluate(
            """() => { const c = window.clients.late;
               c.subscribe("secret:z");
               window.lateRoom = c.subscribe("room:a").then((ack) => ack.data);
               window.dropped = c.subscribe("room:gone").catch((e) => e.code);
               c.unsubscribe("room:gone");
               c.reconnect(); }"""
        )
        late = await wait_event(page, "late", "subscribeerror")
        assert late[0]["detail"]["topic"] == "secret:z"
        assert await page.evaluate("() => window.lateRoom") == {
            "type": "subscribe",
            "topic": "room:a",
        }
        assert await page.evaluate("() => window.dropped") == "unsubscribed"
        assert await page.evaluate("() => window.clients.late.subscriptions") == ["room:a"]

        # Allowed at first, refused at the resubscribe after a reconnect: forgotten, told.
        server.denied.add("room:a")
        (late_id,) = server.ids("eva")
        assert await server.hub.disconnect_user("eva", CloseCode.SERVICE_RESTART, "restart") == 1
        revoked = await wait_event(page, "late", "subscribeerror", "e.detail.topic === 'room:a'")
        assert revoked[0]["detail"]["code"] == "forbidden"
        assert await page.evaluate("() => window.clients.late.subscriptions") == []
        assert late_id not in server.ids("eva")

        # close() settles a subscribe still waiting for its connection.
        await make_client(
            page, "idle", options={**FAST, "token": token("fay"), "startClosed": True}
        )
        closed = await page.evaluate(
            """() => { const c = window.clients.idle; const answer = c.subscribe("room:a");
               c.close(); return answer.catch((e) => e.code); }"""
        )
        assert closed == "closed"
        # One more round trip, so any unhandled rejection would have been reported.
        await page.evaluate("() => window.clients.c.subscribe('room:z')")
        await page.evaluate("() => Object.values(window.clients).forEach((c) => c.close())")
        await no_unhandled_rejections(page)
