"""The client side of the examples' tests: a real ``websockets`` client's small verbs.

`bearer()` is the subprotocol list a browser sends; `recv()` skips heartbeat pings;
`refused_with()` connects and returns the close code of a connection the server ends at
once. Every wait is bounded by `BOUND`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from uuid import UUID

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers.support import token

BOUND = 15.0
"""Upper bound for any single wait; only reached when something is broken."""


def bearer(subject: str | UUID, **kwargs: Any) -> list[Any]:
    """The subprotocol list a browser sends: ``["bearer", <jwt>]``."""
    return ["bearer", token(str(subject), **kwargs)]


async def recv(ws: ClientConnection) -> dict[str, Any]:
    """The next envelope, skipping heartbeat pings."""
    async with asyncio.timeout(BOUND):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] != "ping":
                return frame


async def send(ws: ClientConnection, kind: str, data: Any = None, **extra: Any) -> None:
    """Send one envelope: ``kind``, ``data`` (``{}`` if none) and any ``extra`` fields."""
    await ws.send(json.dumps({"type": kind, "data": {} if data is None else data, **extra}))


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; return the close code it sent."""
    async with asyncio.timeout(BOUND):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
    return ws.close_code


async def refused_with(url: str, **kwargs: Any) -> int | None:
    """Connect and return the close code of a connection the server ends at once."""
    async with connect(url, **kwargs) as ws:
        return await close_code(ws)
