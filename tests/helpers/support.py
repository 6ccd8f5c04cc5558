"""Shared test support: settings, tokens, a small app, tool requirements, and hub
connections that write to a `Peer` instead of a socket.

Tests build settings explicitly; nothing here reads ``WS_*`` from the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws._types import BearerResolver
from tempest_ws.testing import make_token

SECRET = "test-secret-0123456789abcdef0123456789"


def make_settings(**overrides: Any) -> WebSocketSettings:
    """Settings for tests: a JWT secret and whatever the test overrides; no env file."""
    values: dict[str, Any] = {"WS_JWT_SECRET": SECRET}
    values.update(overrides)
    return WebSocketSettings(_env_file=None, **values)  # type: ignore[call-arg]


def token(subject: str = "alice", **kwargs: Any) -> str:
    """A valid HS256 token for ``subject`` signed with `SECRET`."""
    return make_token(subject, secret=SECRET, **kwargs)


def ws_url(base: str, path: str = "/ws") -> str:
    """``http://host:port`` -> ``ws://host:port/ws``."""
    return base.replace("http://", "ws://", 1) + path


async def echo_handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """A handler covering the hub: subscribe, publish, echo, whoami, fail, close."""
    while True:
        message = await ws.receive_json()
        kind, data = message["type"], message.get("data") or {}
        if kind == "subscribe":
            await hub.subscribe(connection.connection_id, data["topic"])
            await ws.send_json({"type": "subscribed", "data": {"topic": data["topic"]}})
        elif kind == "publish":
            await hub.broadcast(
                {"type": "published", "data": data.get("payload")},
                topic=data.get("topic"),
                exclude=connection.connection_id if data.get("exclude_self") else None,
            )
        elif kind == "echo":
            await ws.send_json({"type": "echo", "data": data})
        elif kind == "whoami":
            await ws.send_json(
                {
                    "type": "whoami",
                    "data": {"user": connection.user_key, "id": connection.connection_id},
                }
            )
        elif kind == "fail":
            raise RuntimeError("handler bug on purpose")
        elif kind == "close":
            await ws.close(code=int(data.get("code", 1000)))
            return


HandlerType = Callable[[WebSocket, WebSocketConnection, WebSocketHub], Awaitable[None]]


def build_app(
    settings: WebSocketSettings,
    *,
    handler: HandlerType = echo_handler,
    hub: WebSocketHub | None = None,
    resolver: BearerResolver | None = None,
    **router_options: Any,
) -> tuple[FastAPI, WebSocketHub]:
    """A FastAPI app with the router at ``/ws`` and a hub built from ``settings`` (unless
    given); ``router_options`` go to `make_websocket_router` (``builtins``, ...)."""
    hub = hub or WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            handler,
            hub=hub,
            bearer_resolver=resolver or jwt_bearer_resolver(settings),
            settings=settings,
            **router_options,
        )
    )
    return app, hub


def require_tool(name: str) -> str:
    """Path of executable ``name``; fail (under the test command or CI) or skip if missing."""
    # Debian puts daemons such as nginx in /usr/sbin, which a non-login PATH may lack.
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is not None:
        return path
    message = f"{name} is not installed (scripts/bootstrap.sh installs it as root)"
    if os.environ.get("TEMPEST_WS_REQUIRE_TOOLS") or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Peer:
    """Records what the connection sends; can stall like a client that stopped reading."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.stalled = False
        self.unblock = asyncio.Event()
        self.fail_with: BaseException | None = None

    async def send(self, message: Any) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if self.stalled:
            await self.unblock.wait()
        self.sent.append(dict(message))

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    def close_codes(self) -> list[int]:
        return [m["code"] for m in self.sent if m["type"] == "websocket.close"]


async def connect(hub: WebSocketHub, user: str) -> tuple[WebSocketConnection, Peer]:
    """A registered, started connection of ``user`` on ``hub`` writing to a new peer."""
    peer = Peer()
    connection = hub.create_connection(user, send=peer.send)
    await hub.register(connection)
    connection.start()
    return connection, peer


def frames(peer: Peer) -> list[dict[str, Any]]:
    """Every envelope the peer got, decoded, in order."""
    return [json.loads(t) for t in peer.texts()]


def notes(peer: Peer) -> list[Any]:
    """The ``data`` of every ``n`` envelope the peer got, in order."""
    return [m["data"] for m in frames(peer) if m["type"] == "n"]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def until_async(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll the async predicate ``check`` until true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.005)


def upgrade_request(host: str, port: int | str, user: str) -> bytes:
    """The bytes of a WebSocket upgrade request to ``/ws`` with ``user``'s bearer token."""
    return (
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: bearer, {token(user)}\r\n\r\n"
    ).encode()


async def stalled_socket(base: str, user: str) -> socket.socket:
    """A raw WebSocket to ``base`` (``http://host:port``) for ``user``, with a 4 KiB
    receive buffer, that reads nothing after the handshake: a client that stopped reading."""
    loop = asyncio.get_running_loop()
    host, port = base.removeprefix("http://").split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await loop.sock_connect(raw, (host, int(port)))
    await loop.sock_sendall(raw, upgrade_request(host, port, user))
    response = b""
    async with asyncio.timeout(30):
        while b"\r\n\r\n" not in response:
            response += await loop.sock_recv(raw, 1)  # byte by byte: leave frames unread
    assert response.startswith(b"HTTP/1.1 101")
    return raw
