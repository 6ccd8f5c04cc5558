"""docs/testing.md: reading until the close, and waiting for the hub's state."""

from __future__ import annotations

import asyncio
import contextlib

import websockets
from websockets.asyncio.client import ClientConnection

from tempest_ws import CloseCode, WebSocketHub


async def expect_unauthorized(ws: ClientConnection) -> None:
    """Read until the server closes; the close code must be 4401."""
    # --8<-- [start:close]
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        while True:
            await ws.recv()
    assert ws.close_code == CloseCode.UNAUTHORIZED
    # --8<-- [end:close]


async def until_no_connections(hub: WebSocketHub) -> None:
    """Return once the hub has no connection; fail after 5 seconds."""
    # --8<-- [start:wait]
    async with asyncio.timeout(5):
        while hub.stats().connections:
            await asyncio.sleep(0.01)
    # --8<-- [end:wait]
