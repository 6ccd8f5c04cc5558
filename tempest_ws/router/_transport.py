"""Reach below ASGI, where the server allows it: the transport a connection runs on.

ASGI gives an application no way to abort a connection whose peer stopped reading: a
close frame cannot be written past a full buffer, and ``transport.close()`` waits for that
buffer to drain, which never happens. uvicorn's WebSocket protocols expose the transport
on the object whose bound method is the ASGI ``receive`` callable; when found, the
connection uses it to abort a stalled peer. uvloop's transports do not subclass
asyncio's transport classes, so a transport is recognised by its methods.

`find_transport()` finds it; the hub's connections write to it
(`tempest_ws.hub._direct`). `server_callables()` takes the server's ``receive`` and
``send`` from the ``WebSocket`` FastAPI built around them.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from starlette.websockets import WebSocket

from tempest_ws._types import Receive, Send

__all__ = ["find_transport", "server_callables"]

_TRANSPORT_METHODS = ("write", "abort", "is_closing", "get_write_buffer_size")


def _is_write_transport(candidate: object) -> bool:
    if isinstance(candidate, asyncio.WriteTransport):
        return True
    return all(callable(getattr(candidate, name, None)) for name in _TRANSPORT_METHODS)


def find_transport(*callables: Any) -> asyncio.WriteTransport | None:
    """Return the write transport behind the given ASGI callables, or ``None``."""
    for candidate in callables:
        owner = getattr(candidate, "__self__", None)
        transport = getattr(owner, "transport", None)
        if transport is not None and _is_write_transport(transport):
            return cast(asyncio.WriteTransport, transport)
    return None


def server_callables(websocket: WebSocket) -> tuple[Receive, Send]:
    """The ASGI ``receive``/``send`` the ``WebSocket`` was built on.

    Starlette keeps them as ``_receive``/``_send`` (there is no public accessor); the
    bound methods are the fallback, which still works, only without the transport.
    """
    receive = getattr(websocket, "_receive", None)
    send = getattr(websocket, "_send", None)
    if callable(receive) and callable(send):
        return cast(Receive, receive), cast(Send, send)
    return websocket.receive, websocket.send
