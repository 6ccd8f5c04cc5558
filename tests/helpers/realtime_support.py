"""Shared helpers of the ``test_realtime_*`` modules (this module holds no tests).

`Tab` is a real ``websockets`` client that records every envelope it receives
(answering pings), so a test can wait for a frame, or prove that one never came: per
connection, frames arrive in publish order, so "X never arrived" is asserted once a
later marker from the same publisher has arrived. Waits are bounded, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
)
from tests.helpers.support import build_app, token, ws_url

BOUND = 15.0
"""Upper bound of one wait; reached only when something is broken."""


class Tab:
    """One browser tab: a client socket recording every envelope, pings answered."""

    def __init__(self, ws: ClientConnection, user: str) -> None:
        self.ws = ws
        self.user = user
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "ping":
                    pong = {"type": "pong", "data": {}, "request_id": frame.get("request_id")}
                    with contextlib.suppress(ConnectionClosed):
                        await self.ws.send(json.dumps(pong))
                    continue
                self.frames.append(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        self._changed.set()

    @property
    def connection_id(self) -> str:
        return str(self.of("hello")[0]["connection_id"])

    def of(self, kind: str) -> list[Any]:
        """The ``data`` of every ``kind`` envelope received so far."""
        return [f["data"] for f in self.frames if f["type"] == kind]

    def types(self) -> list[str]:
        return [f["type"] for f in self.frames]

    async def wait(self, check: Callable[[], bool], limit: float = BOUND) -> None:
        """Until ``check()`` holds (re-checked on every frame and on close)."""
        async with asyncio.timeout(limit):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    async def send(self, kind: str, data: Any = None, request_id: str | None = None) -> None:
        body = {"type": kind, "data": {} if data is None else data, "request_id": request_id}
        await self.ws.send(json.dumps(body))

    async def request(self, kind: str, data: Any = None, *, rid: str) -> dict[str, Any]:
        """Send with ``request_id=rid``; return the envelope answering it."""
        await self.send(kind, data, rid)
        await self.wait(lambda: self.answer(rid) is not None)
        answer = self.answer(rid)
        assert answer is not None
        return answer

    def answer(self, rid: str) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("request_id") == rid), None)

    async def closed(self, limit: float = BOUND) -> int | None:
        """Wait until the server closed the socket; its close code."""
        await self.wait(lambda: self._reader.done(), limit)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


def rooms_and_own_inbox(connection: WebSocketConnection, topic: str) -> bool:
    """A topic authorizer: any ``room:*`` topic, and the user's own ``inbox:<user>``."""
    kind, _, name = topic.partition(":")
    return kind == "room" or (kind == "inbox" and name == connection.user_key)


def ws_endpoint(base: str, path: str = "/ws", **query: str) -> str:
    """`ws_url()` with ``query`` (if any) as its query string."""
    url = ws_url(base, path)
    return f"{url}?{urlencode(query)}" if query else url


@contextlib.asynccontextmanager
async def open_tab(
    base: str, user: str, *, wait_hello: bool = True, **query: str
) -> AsyncIterator[Tab]:
    """A `Tab` of ``user`` on the server at ``base`` (``hello`` already read)."""
    protocols: list[Any] = ["bearer", token(user)]
    async with connect(ws_endpoint(base, **query), subprotocols=protocols, proxy=None) as ws:
        tab = Tab(ws, user)
        if wait_hello:
            await tab.wait(lambda: bool(tab.of("hello")) or tab.close_code is not None)
        try:
            yield tab
        finally:
            await tab.close()


async def echo_until_closed(
    ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub
) -> None:
    """A handler that echoes every envelope it sees as ``seen`` (proves what got through)."""
    while True:
        message = await ws.receive_json()
        await connection.send({"type": "seen", "data": {"type": message.get("type")}})


def realtime_app(
    settings: WebSocketSettings,
    hub: WebSocketHub,
    *,
    handler: Any = echo_until_closed,
    **router_options: Any,
) -> FastAPI:
    """An app with the router at ``/ws`` (``router_options`` are the realtime ones)."""
    app, _ = build_app(settings, handler=handler, hub=hub, **router_options)
    return app
