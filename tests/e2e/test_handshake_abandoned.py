"""A client that gives up before its handshake is answered leaves no error behind.

In a reconnect storm a worker's event loop can be busy for longer than a client's open
timeout: by the time the endpoint runs, the client has closed its socket. The endpoint
then stops, and the server must see the same as for any client that left (uvicorn logs
nothing at error level: no "returned without completing handshake", no traceback), the
hub holds nothing of it, and the next client is served as usual.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tempest_ws.testing import serve
from tests.helpers.hardening import build_router_app, next_of_type
from tests.helpers.support import make_settings, token, until, upgrade_request, ws_url

pytestmark = pytest.mark.e2e


class Records(logging.Handler):
    """Keeps every record of the loggers it is attached to (uvicorn's do not propagate
    to the root logger, so ``caplog`` does not see them)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class HeldHandshakes:
    """ASGI middleware: a WebSocket scope waits for `release` before the app sees it
    (a worker whose event loop is busy elsewhere)."""

    def __init__(self, app: Any, *, closing: bool = False) -> None:
        self.app = app
        self.closing = closing
        self.release = asyncio.Event()
        self.waiting = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not self.release.is_set():
            self.waiting += 1
            await self.release.wait()
            if self.closing:
                # The peer's FIN read in this same turn of the loop: the transport is
                # closing and the protocol has not yet been told the connection is lost.
                receive.__self__.transport.close()
        await self.app(scope, receive, send)


def _upgrade(host: str, port: int, subject: str, reset: bool) -> socket.socket:
    """A socket that sent a WebSocket upgrade request; closing it sends a FIN, or with
    ``reset`` a reset (``SO_LINGER`` 0)."""
    sock = socket.create_connection((host, port), timeout=5)
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(upgrade_request(host, port, subject))
    return sock


@pytest.mark.parametrize(
    ("reset", "closing"),
    [(False, False), (True, False), (False, True)],
    ids=["fin", "reset", "closing-not-yet-lost"],
)
async def test_a_client_gone_before_the_answer_leaves_no_error(
    reset: bool, closing: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(WS_MAX_CONNECTIONS_PER_IP=5)
    app, hub, _ = build_router_app(settings)
    held = HeldHandshakes(app, closing=closing)
    caplog.set_level(logging.INFO)
    records = Records()
    async with serve(held, settings=settings) as base:
        # Attached once uvicorn has configured its loggers (which drops their handlers).
        uvicorn_error = logging.getLogger("uvicorn.error")
        uvicorn_error.addHandler(records)
        try:
            host, port = base.removeprefix("http://").split(":")
            socks = [
                await asyncio.to_thread(_upgrade, host, int(port), f"gone{n}", reset)
                for n in range(3)
            ]
            await until(lambda: held.waiting == 3)
            if not closing:  # the clients leave while their requests wait
                for sock in socks:
                    sock.close()
                await asyncio.sleep(0.2)  # the server reads the closes
            held.release.set()
            await asyncio.sleep(0.3)  # the three endpoints run and end
            for sock in socks:
                sock.close()
            assert hub.stats().connections == 0
            async with connect(
                ws_url(base),
                subprotocols=["bearer", token("next")],  # type: ignore[list-item]
            ) as ws:
                await next_of_type(ws, "hello")
                assert [c.user_id for c in hub.connections_of("next")] == ["next"]
        finally:
            uvicorn_error.removeHandler(records)
    errors = [r for r in [*caplog.records, *records.records] if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
