"""The load generator's light client: one ``asyncio.Protocol`` per WebSocket connection.

It parses just enough RFC 6455 to count the bench frames of the current `Phase`, check
their order, read the timestamp the server embedded, and answer pings (protocol pings
and tempest_ws ``ping`` envelopes), so one process can hold thousands of sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from typing import Any

from ._wire import PREFIX, SEQ_AT, SEQ_DIGITS, TIME_AT, TIME_DIGITS, client_frame

PING_ENVELOPE = b'{"type":"ping"'
PONG_FRAME = client_frame(b'{"type":"pong","data":{},"request_id":null}')


class Phase:
    """What the clients count right now (shared by every client of the process)."""

    def __init__(self) -> None:
        self.seq0 = 0
        self.expected = 0
        self.record_latency = False
        self.record_pings = False
        self.pings_since = 0.0  # time.monotonic() when ping recording was armed
        self.latencies = array("q")
        self.complete = 0
        self.total = 0
        self.order_errors = 0
        self.last_ns = 0


class Client(asyncio.Protocol):
    """One WebSocket client; counts bench frames of the current phase."""

    __slots__ = (
        "buf",
        "close_code",
        "count",
        "expect",
        "handshaken",
        "lost",
        "on_lost",
        "phase",
        "ping_times",
        "ready",
        "request",
        "since",
        "status",
        "target",
        "transport",
    )

    def __init__(self, phase: Phase, request: bytes, ready: asyncio.Future[bool]) -> None:
        self.phase = phase
        self.request = request
        self.ready = ready
        self.buf = b""
        self.handshaken = False
        self.transport: asyncio.Transport | None = None
        self.count = 0
        self.expect = 0
        self.close_code: int | None = None
        self.lost = False
        self.ping_times: list[float] = []
        self.status = 0  # the HTTP status of the handshake answer
        self.since = 0.0  # time.monotonic() of the handshake
        self.target: tuple[int, str, str] = (0, "", "")  # port, source address, token
        self.on_lost: Any = None  # called with the client once its connection is gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is duck-typed
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_result(False)
        if self.on_lost is not None:
            self.on_lost(self)

    def arm(self) -> None:
        self.count = 0
        self.expect = self.phase.seq0

    def data_received(self, data: bytes) -> None:
        if not self.handshaken:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            ok = self.buf.startswith(b"HTTP/1.1 101")
            with contextlib.suppress(ValueError):
                self.status = int(self.buf[9:12])
            self.since = time.monotonic()
            data = self.buf[end + 4 :]
            self.buf = b""
            self.handshaken = ok
            if not self.ready.done():
                self.ready.set_result(ok)
            if not ok or not data:
                return
        buf = self.buf + data if self.buf else data
        self.buf = self._parse(buf)

    def _parse(self, buf: bytes) -> bytes:
        phase = self.phase
        now = 0
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 0x1:
                if buf.startswith(PREFIX, start):
                    seq = int(buf[start + SEQ_AT : start + SEQ_AT + SEQ_DIGITS])
                    if seq >= phase.seq0:
                        if seq != self.expect:
                            phase.order_errors += 1
                        self.expect = seq + 1
                        self.count += 1
                        phase.total += 1
                        if now == 0:
                            now = time.time_ns()
                        phase.last_ns = now
                        if phase.record_latency:
                            sent = int(buf[start + TIME_AT : start + TIME_AT + TIME_DIGITS])
                            phase.latencies.append(now - sent)
                        if self.count == phase.expected:
                            phase.complete += 1
                elif buf.startswith(PING_ENVELOPE, start):
                    if phase.record_pings:
                        self.ping_times.append(time.monotonic())
                    self._write(PONG_FRAME)
            elif opcode == 0x9:
                self._write(client_frame(buf[start:end], 0xA))
            elif opcode == 0x8:
                self.close_code = (buf[start] << 8) | buf[start + 1] if length >= 2 else 1005
                if self.transport is not None:
                    self.transport.close()
            pos = end
        return buf[pos:]

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
