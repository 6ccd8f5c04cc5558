"""Handshake floods and abandoned handshakes over real uvicorn.

Past ``WS_MAX_PENDING_HANDSHAKES`` handshakes in progress a new one is refused before
accept with HTTP 503 and ``Retry-After``: the ones in progress are not slowed down and
finish. A client that leaves while its handshake is in progress (it gave up waiting)
leaves nothing behind: no ``on_connect``, no registration, no place counted toward
``WS_MAX_CONNECTIONS``. A connection whose peer left stops counting as soon as the
server reads the FIN or reset, not after the close timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tempest_ws import WebSocketConnection, WebSocketHub, WebSocketRouter, make_websocket_router
from tempest_ws.client import Backoff, Disconnect, WebSocketClient, default_is_fatal
from tempest_ws.testing import serve
from tests.helpers.hardening import next_of_type
from tests.helpers.support import build_app, echo_handler, make_settings, token, until, ws_url
from tests.security._servers import WS_PROTOCOLS

pytestmark = pytest.mark.e2e


class SlowResolver:
    """A bearer resolver that holds every handshake until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def __call__(self, token: str) -> str:
        self.waiting += 1
        await self.release.wait()
        return token


def build(
    resolver: SlowResolver, connected: list[str], **settings: Any
) -> tuple[FastAPI, WebSocketHub, WebSocketRouter]:
    config = make_settings(**settings)
    hub = WebSocketHub.from_settings(config)

    async def on_connect(connection: WebSocketConnection, ws: Any) -> None:
        connected.append(connection.connection_id)

    router = make_websocket_router(
        echo_handler, hub=hub, bearer_resolver=resolver, settings=config, on_connect=on_connect
    )
    app = FastAPI()
    app.include_router(router)
    return app, hub, router


async def open_raw(url: str, user: str) -> ClientConnection:
    return await connect(url, subprotocols=["bearer", user])  # type: ignore[list-item]


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_past_the_pending_bound_a_handshake_gets_503_with_retry_after(
    ws: str, caplog: pytest.LogCaptureFixture
) -> None:
    resolver, connected = SlowResolver(), []
    app, hub, router = build(resolver, connected, WS_MAX_PENDING_HANDSHAKES=2)
    async with serve(app, ws=ws) as base:
        url = ws_url(base)
        held = [await open_raw(url, f"user-{i}") for i in range(2)]  # accepted, token pending
        await until(lambda: resolver.waiting == 2)
        assert router.handshakes_in_progress == 2
        with pytest.raises(InvalidStatus) as refused:
            await open_raw(url, "user-late")
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "5"
        assert router.handshakes_shed == 1
        resolver.release.set()
        for client in held:  # the two in progress were not disturbed
            await next_of_type(client, "hello")
        assert router.handshakes_in_progress == 0
        late = await open_raw(url, "user-late")  # room again
        await next_of_type(late, "hello")
        assert hub.stats().connections == 3
        for client in [*held, late]:
            await client.close()
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "tempest_ws" and r.levelno == logging.WARNING
    ]
    assert any("WS_MAX_PENDING_HANDSHAKES" in w and "503" in w for w in warnings), warnings


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_a_client_that_left_during_its_handshake_is_never_registered(ws: str) -> None:
    resolver, connected = SlowResolver(), []
    app, hub, router = build(resolver, connected, WS_MAX_CONNECTIONS=1)
    async with serve(app, ws=ws) as base:
        url = ws_url(base)
        parts = urlsplit(base)
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: bearer, ghost\r\n\r\n"
        )
        await until(lambda: resolver.waiting == 1)  # accepted; its token is being checked
        # The client gives up (as one whose handshake timed out): RST, nothing read.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        # One more request to the same server: its event loop has seen the reset by then.
        with pytest.raises(InvalidStatus):
            await connect(base.replace("http", "ws") + "/missing")
        resolver.release.set()
        await until(lambda: router.handshakes_in_progress == 0)
        assert connected == []  # no on_connect for a client that is gone
        assert hub.stats().connections == 0
        # Its place under WS_MAX_CONNECTIONS=1 is free for the next client.
        client = await open_raw(url, "alice")
        await next_of_type(client, "hello")
        assert hub.stats().connections == 1
        await client.close()


async def test_the_python_client_waits_the_retry_after_of_a_refused_handshake() -> None:
    resolver, connected = SlowResolver(), []
    app, hub, router = build(resolver, connected, WS_MAX_PENDING_HANDSHAKES=1)
    disconnects: list[Disconnect] = []

    def is_fatal(disconnect: Disconnect) -> bool:  # sees every failed attempt too
        disconnects.append(disconnect)
        return default_is_fatal(disconnect)

    async with serve(app) as base:
        url = ws_url(base)
        held = await open_raw(url, "first")  # takes the only place
        await until(lambda: resolver.waiting == 1)
        client = WebSocketClient(
            url,
            token="second",
            long_backoff=Backoff(0.01, 0.05),  # caps the Retry-After: the test stays short
            rng=random.Random(3),
            is_fatal=is_fatal,
        )
        await client.connect(wait=False)
        await until(lambda: len(disconnects) >= 1)
        resolver.release.set()
        await asyncio.wait_for(client.wait_connected(), 10)
        assert hub.stats().connections == 2
        await client.close()
        await held.close()
    refused = disconnects[0]
    assert refused.http_status == 503
    assert refused.retry_after == 5.0
    assert router.handshakes_shed >= 1


@pytest.mark.parametrize("how", ["fin", "reset"])
async def test_a_peer_that_left_stops_counting_at_once(how: str) -> None:
    """Not after the close timeout, even with a handler that never receives."""

    async def deaf(ws: Any, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        await asyncio.wait([connection.closing_future()])  # never reads the socket

    settings = make_settings(WS_CLOSE_TIMEOUT_SECONDS=60, WS_MAX_CONNECTIONS=1)
    app, hub = build_app(settings, handler=deaf)
    async with serve(app, settings=settings) as base:
        for user in ("alice", "bob"):  # bob takes the place alice left
            client = await connect(ws_url(base), subprotocols=["bearer", token(user)])  # type: ignore[list-item]
            await next_of_type(client, "hello")
            assert hub.stats().connections == 1
            if how == "reset":
                sock = client.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.transport.abort()
            else:
                client.transport.close()
            await until(lambda: hub.stats().connections == 0, timeout=10)
