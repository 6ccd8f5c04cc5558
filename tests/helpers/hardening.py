"""Test tools for the hardening suite: a raw WebSocket client, a TCP proxy, log capture.

The raw client writes frames byte by byte as RFC 6455 lays them out, so tests can send
what no well-behaved client library would: fragments past the size limit, invalid
UTF-8, reserved opcodes and bits, unmasked frames. Everything runs on loopback, and
every read is bounded in time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import struct
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tempest_ws import (
    CloseCode,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.router import WebSocketRouter
from tests.helpers.support import HandlerType, echo_handler

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

BOUND = 15.0
"""Upper bound for a single wait; reached only when something is broken."""


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
) -> bytes:
    """One client frame, masked (as RFC 6455 requires of clients) unless ``mask=False``."""
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    mask_bit = 0x80 if mask else 0
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return header + key + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


@dataclass(frozen=True, slots=True)
class ServerFrame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode(errors="replace")


class RawClient:
    """A WebSocket client with no opinions: it sends exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.response_headers: dict[str, str] = {}

    @classmethod
    async def connect(
        cls,
        base: str,
        *,
        token: str | None = None,
        path: str = "/ws",
        headers: Sequence[tuple[str, str]] = (),
    ) -> RawClient:
        """Open a TCP connection to ``base`` (``http://host:port``) and do the handshake."""
        host, port = base.removeprefix("http://").split(":")
        async with asyncio.timeout(BOUND):
            reader, writer = await asyncio.open_connection(host, int(port))
            client = cls(reader, writer)
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [
                f"GET {path} HTTP/1.1",
                f"Host: {host}:{port}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
            ]
            if token is not None:
                lines.append(f"Sec-WebSocket-Protocol: bearer, {token}")
            lines.extend(f"{name}: {value}" for name, value in headers)
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        client.status = int(status_line.split()[1])
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                client.response_headers[name.strip().lower()] = value.strip()
        return client

    async def send(self, data: bytes) -> None:
        """Write raw bytes; a peer that already closed is not an error here."""
        with contextlib.suppress(ConnectionError):
            self.writer.write(data)
            await self.writer.drain()

    async def send_frame(self, opcode: int, payload: bytes = b"", **options: bool | int) -> None:
        await self.send(encode_frame(opcode, payload, **options))  # type: ignore[arg-type]

    async def read_frame(self, timeout: float = BOUND) -> ServerFrame | None:
        """The next frame from the server, or ``None`` at EOF or a reset."""
        try:
            async with asyncio.timeout(timeout):
                head = await self.reader.readexactly(2)
                size = head[1] & 0x7F
                if size == 126:
                    size = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                payload = await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return ServerFrame(bool(head[0] & 0x80), head[0] & 0x0F, payload)

    async def frames_until_close(
        self, timeout: float = BOUND, limit: int = 10_000
    ) -> tuple[list[ServerFrame], ServerFrame | None]:
        """Read until a close frame (returned second) or EOF (``None``); bounded."""
        seen: list[ServerFrame] = []
        async with asyncio.timeout(timeout):
            for _ in range(limit):
                frame = await self.read_frame(timeout)
                if frame is None:
                    return seen, None
                if frame.opcode == CLOSE:
                    return seen, frame
                seen.append(frame)
        raise AssertionError(f"no close after {limit} frames")

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()

    async def close(self) -> None:
        self.abort()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class BlackholeProxy:
    """A loopback TCP proxy that can stop forwarding without closing anything.

    After `blackhole()` both pumps stop reading: no byte moves, no FIN or RST is
    sent, the sockets stay open. To each side it looks like the network went away.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._forwarding = asyncio.Event()
        self._forwarding.set()

    async def __aenter__(self) -> BlackholeProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def blackhole(self) -> None:
        self._forwarding.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, upstream_writer]
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await self._forwarding.wait()
                data = await source.read(65536)
                if not data:
                    return
                if not self._forwarding.is_set():
                    await asyncio.Event().wait()  # dropped, like the network that carried it
                sink.write(data)
                await sink.drain()


class LogCapture(logging.Handler):
    """Every record of every logger, formatted with its traceback, for leak scans."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def capture_all_logs(*loggers: str, level: int = logging.DEBUG) -> Iterator[LogCapture]:
    """Capture the root logger and ``loggers`` (set to ``level``) in one `LogCapture`.

    The handler is attached to each named logger that does not propagate (uvicorn's do
    not), so use it *after* uvicorn configured its logging (inside ``serve``).
    """
    handler = LogCapture()
    targets = [logging.getLogger()]
    targets += [logging.getLogger(n) for n in loggers if not logging.getLogger(n).propagate]
    saved = {name: logging.getLogger(name).level for name in loggers}
    for target in targets:
        target.addHandler(handler)
    for name in loggers:
        logging.getLogger(name).setLevel(level)
    try:
        yield handler
    finally:
        for target in targets:
            target.removeHandler(handler)
        for name, previous in saved.items():
            logging.getLogger(name).setLevel(previous)


def tempest_tasks() -> list[str]:
    """Names of live tasks started by tempest_ws (writer, handler, close, drain)."""
    return sorted(
        name
        for task in asyncio.all_tasks()
        if (name := task.get_name()).startswith("tempest_ws") and not task.done()
    )


def build_router_app(
    settings: WebSocketSettings,
    *,
    handler: HandlerType = echo_handler,
    hub: WebSocketHub | None = None,
) -> tuple[FastAPI, WebSocketHub, WebSocketRouter]:
    """Like ``tests.helpers.support.build_app``, also returning the router (to drain or inspect)."""
    hub = hub or WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )
    app = FastAPI()
    app.include_router(router)
    return app, hub, router


async def next_of_type(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next envelope of type ``kind``, skipping others (bounded)."""
    async with asyncio.timeout(BOUND):
        while True:
            envelope: dict[str, Any] = json.loads(await ws.recv())
            if envelope["type"] == kind:
                return envelope


async def until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int, str]:
    """Read until the server's close frame: (envelopes before it, code, reason)."""
    seen: list[dict[str, Any]] = []
    closed: ConnectionClosed | None = None
    try:
        async with asyncio.timeout(BOUND):
            while True:
                seen.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        closed = exc
    assert closed is not None
    assert closed.rcvd is not None, "closed without a close frame"
    return seen, closed.rcvd.code, closed.rcvd.reason


async def fuzz_in_thread(
    loop: asyncio.AbstractEventLoop,
    session: Callable[[Any], Coroutine[Any, Any, int | None]],
    strategy: st.SearchStrategy[Any],
    examples: int,
    allowed: Collection[int | None],
) -> list[int | None]:
    """Run hypothesis in a worker thread; each example runs ``session`` on ``loop`` (where
    the server lives) and must end with a close code in ``allowed``, never 1011.

    Returns the close code of every example, in order.
    """
    codes: list[int | None] = []

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def example(value: Any) -> None:
        code = asyncio.run_coroutine_threadsafe(session(value), loop).result(BOUND * 2)
        assert code != CloseCode.INTERNAL_ERROR
        assert code in allowed, code
        codes.append(code)

    await asyncio.to_thread(example)
    return codes
