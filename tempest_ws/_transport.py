"""Find the asyncio transport under an ASGI server, where the server allows it.

ASGI gives an application no way to abort a connection whose peer stopped reading: a
close frame cannot be written past a full buffer, and ``transport.close()`` waits for that
buffer to drain, which never happens. uvicorn's WebSocket protocols expose the transport
on the object whose bound method is the ASGI ``receive`` callable; when found, the
connection uses it to abort a stalled peer. Elsewhere this returns ``None`` and the
connection falls back to a close with a timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["find_transport"]


def find_transport(*callables: Any) -> asyncio.WriteTransport | None:
    """Return the ``asyncio.WriteTransport`` behind the given ASGI callables, or ``None``."""
    for candidate in callables:
        owner = getattr(candidate, "__self__", None)
        transport = getattr(owner, "transport", None)
        if isinstance(transport, asyncio.WriteTransport):
            return transport
    return None
