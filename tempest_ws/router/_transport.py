"""Reach below ASGI, where the server allows it: the transport a connection runs on.

ASGI gives an application no way to abort a connection whose peer stopped reading: a
close frame cannot be written past a full buffer, and ``transport.close()`` waits for that
buffer to drain, which never happens. uvicorn's WebSocket protocols expose the transport
on the object whose bound method is the ASGI ``receive`` callable; when found, the
connection uses it to abort a stalled peer. uvloop's transports do not subclass
asyncio's transport classes, so a transport is recognised by its methods.

`find_transport()` finds it; the hub's connections write to it
(`tempest_ws.hub._direct`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

__all__ = ["find_transport"]

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
