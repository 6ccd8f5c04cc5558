"""A protocol-faithful history server for the browser client's tests, and a cuttable proxy.

Until the hub speaks history (docs/history.md, integration plan), `HistoryTestServer`
answers the wire format of ``tempest_ws.history.wire`` with the real pieces: a
``MemoryHistory`` assigns offsets and epochs, ``stamp_frame`` stamps every message,
``requested_position`` reads a resuming ``subscribe`` and ``since`` /
``recovery_envelope`` answer it. One lock serializes publishing and subscribing, so a
replay and live messages never interleave (the hub's ``Seam`` does that job for real).

The browser reaches the WebSocket through a `CutProxy`, so a test can drop every
connection abruptly (the client sees 1006, as when a node dies) and refuse new ones for
as long as it needs. The page, ``/ws/client.js`` and the modules under ``/ws/client/``
are served directly.

The test drives the server only through `HistoryTestServer`'s public methods
(``publish``, ``notice``, ``send_raw``, ``subscribers``, ``subscribes``) and the proxy;
an end-to-end variant against the real hub implements the same few methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response

from tempest_ws.envelope import encode_envelope, error_envelope
from tempest_ws.history import (
    HistoryPolicy,
    MemoryHistory,
    Position,
    Recovery,
    recovery_envelope,
    requested_position,
    stamp_frame,
)
from tempest_ws.testing import serve
from tests.helpers.browser import PAGE_HTML

WS_PATH = "/history"
"""Where `HistoryTestServer` accepts WebSockets (behind the proxy)."""


class CutProxy:
    """A loopback TCP proxy that can drop every connection at once and refuse new ones.

    `cut()` aborts both sockets of every forwarded connection (no close frame, so
    the browser reports 1006). While `refusing` is true, new connections are
    accepted and aborted at once, so a reconnecting client keeps failing.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.refusing = False
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CutProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.refusing = True  # a connection accepted while closing is dropped too
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> int:
        """Abort every forwarded connection; return how many there were."""
        pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if self.refusing:  # started refusing (or closing) while we connected upstream
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._pairs.append((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()  # one side gone: drop the other, as a dead node would


class HistoryTestServer:
    """The history wire protocol over one WebSocket endpoint, for the browser tests.

    Args:
        heartbeat: when set, ``hello`` promises a silence timeout of ``5 * heartbeat``
            seconds and the server pings every ``heartbeat`` seconds (the client then
            notices a held connection through silence).
        policy: bounds of the ``MemoryHistory`` (``recovery_limit`` bounds replays).

    Attributes:
        history: the store; a test may replace it (``MemoryHistory()``) to simulate a
            restart that changed every epoch.
        subscribes: the ``data`` of every ``subscribe`` received, in order.
        base: ``http://host:port`` of the page (inside `running()`).
        ws_url: ``ws://`` URL of the endpoint through the proxy (inside `running()`).
        proxy: the `CutProxy` (inside `running()`).
    """

    def __init__(self, *, heartbeat: float | None = None, policy: HistoryPolicy | None = None):
        self.policy = policy or HistoryPolicy(topics=("*",))
        self.history = MemoryHistory(self.policy)
        self.heartbeat = heartbeat
        self.subscribes: list[dict[str, Any]] = []
        self.base = ""
        self.ws_url = ""
        self.proxy: CutProxy | None = None
        self._topics: dict[str, set[WebSocket]] = {}
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.app = self._make_app()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HistoryTestServer]:
        """Serve the app under uvicorn, behind a fresh `CutProxy`."""
        async with serve(self.app) as base:
            port = int(base.rsplit(":", 1)[1])
            async with CutProxy(port) as proxy:
                self.base, self.proxy = base, proxy
                self.ws_url = f"ws://127.0.0.1:{proxy.port}{WS_PATH}"
                yield self

    def subscribers(self, topic: str) -> int:
        """How many live connections are subscribed to ``topic``."""
        return len(self._topics.get(topic, ()))

    async def publish(self, topic: str, type_: str, data: Any) -> Position:
        """Append a message to ``topic``'s history and send it, stamped, to subscribers."""
        async with self._lock:
            frame = encode_envelope({"type": type_, "data": data})
            position = await self.history.append(topic, frame)
            await self._fan_out(topic, stamp_frame(frame, topic, position))
            return position

    async def notice(self, topic: str) -> Position:
        """Send the unrequested ``recovery`` (``recovered: false``) of a discontinuity."""
        async with self._lock:
            latest = await self.history.latest(topic)
            await self._fan_out(
                topic, recovery_envelope(topic, Recovery((), False, latest), replayed=0)
            )
            return latest

    async def send_raw(self, topic: str, text: str) -> None:
        """Send ``text`` as is to ``topic``'s subscribers (malformed-input tests)."""
        async with self._lock:
            await self._fan_out(topic, text)

    async def _fan_out(self, topic: str, text: str) -> None:
        for ws in list(self._topics.get(topic, ())):
            try:
                await ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):  # it died: forget it
                self._forget(ws)

    def _forget(self, ws: WebSocket) -> None:
        for members in self._topics.values():
            members.discard(ws)

    async def _subscribe(self, ws: WebSocket, data: Any, request_id: str | None) -> None:
        topic = data.get("topic") if isinstance(data, dict) else None
        if not isinstance(topic, str) or not topic:
            await ws.send_text(error_envelope("bad_topic", "topic required", request_id=request_id))
            return
        try:
            position = requested_position(data)
        except ValueError as exc:
            await ws.send_text(error_envelope("bad_position", str(exc), request_id=request_id))
            return
        async with self._lock:
            self.subscribes.append(dict(data))
            self._topics.setdefault(topic, set()).add(ws)
            ack = {"type": "ack", "data": {"topic": topic}, "request_id": request_id}
            await ws.send_text(json.dumps(ack))
            if position is None:
                recovery = Recovery((), False, await self.history.latest(topic))
            else:
                recovery = await self.history.since(
                    topic, position.offset, position.epoch, limit=self.policy.recovery_limit
                )
            for entry in recovery.entries:
                stamped = stamp_frame(
                    entry.frame, topic, Position(entry.offset, recovery.position.epoch)
                )
                await ws.send_text(stamped)
            replayed = len(recovery.entries)
            await ws.send_text(
                recovery_envelope(topic, recovery, replayed=replayed, request_id=request_id)
            )

    def _make_app(self) -> FastAPI:
        app = FastAPI()
        source = resources.files("tempest_ws").joinpath("static/tempest-ws.js").read_bytes()
        app.add_api_route("/", lambda: HTMLResponse(PAGE_HTML), include_in_schema=False)
        app.add_api_route(
            "/ws/client.js",
            lambda: Response(source, media_type="text/javascript"),
            include_in_schema=False,
        )
        modules = resources.files("tempest_ws").joinpath("static/client")
        app.add_api_route(
            "/ws/client/{module}",
            lambda module: Response(
                modules.joinpath(module).read_bytes(), media_type="text/javascript"
            ),
            include_in_schema=False,
        )

        @app.websocket(WS_PATH)
        async def endpoint(ws: WebSocket) -> None:
            offered = ws.scope.get("subprotocols", [])
            await ws.accept(subprotocol="bearer" if "bearer" in offered else None)
            hello: dict[str, Any] = {"connection_id": f"h-{next(self._ids)}"}
            if self.heartbeat:
                hello["heartbeat_timeout_seconds"] = 5 * self.heartbeat
            await ws.send_text(json.dumps({"type": "hello", "data": hello, "request_id": None}))
            pinger = asyncio.create_task(self._ping(ws)) if self.heartbeat else None
            try:
                while True:
                    message = await ws.receive_json()
                    kind, data = message.get("type"), message.get("data")
                    if kind == "subscribe":
                        await self._subscribe(ws, data, message.get("request_id"))
                    elif kind == "unsubscribe" and isinstance(data, dict):
                        self._topics.get(data.get("topic", ""), set()).discard(ws)
            except (WebSocketDisconnect, RuntimeError):
                pass  # the client (or the proxy) went away
            finally:
                self._forget(ws)
                if pinger is not None:
                    pinger.cancel()
                    # A pinger that failed, failed on this dead socket: nothing to report.
                    with contextlib.suppress(
                        asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
                    ):
                        await pinger

        return app

    async def _ping(self, ws: WebSocket) -> None:
        assert self.heartbeat is not None
        ping = json.dumps({"type": "ping", "data": {}, "request_id": None})
        while True:
            await asyncio.sleep(self.heartbeat)
            async with self._lock:  # never interleaved with a replay or a publish
                await ws.send_text(ping)
