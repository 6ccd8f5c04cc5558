"""Reach below ASGI, where the server allows it: the transport, and a direct write path.

ASGI gives an application no way to abort a connection whose peer stopped reading: a
close frame cannot be written past a full buffer, and ``transport.close()`` waits for that
buffer to drain, which never happens. uvicorn's WebSocket protocols expose the transport
on the object whose bound method is the ASGI ``receive`` callable; when found, the
connection uses it to abort a stalled peer. uvloop's transports do not subclass
asyncio's transport classes, so a transport is recognised by its methods.

`DirectWriter` goes one step further for uvicorn's ``websockets-sansio``
protocol (what ``ws="auto"`` picks in current releases, 0.54 included): while the
connection is open, writable (the transport's buffer under its high-water mark) and
without extensions, a text frame built once per broadcast
([`tempest_ws._frames`][tempest_ws._frames]) is
written to the transport straight away -- the bytes uvicorn's own ``send`` would write,
without its task switch and per-socket encoding. Every frame is written whole and
synchronously, so it never interleaves with uvicorn's own control frames (keepalive
pings, close). Anywhere else -- another protocol or server, a negotiated extension, a
close started, a full buffer -- it declines and the caller uses the ASGI ``send`` path,
which waits for the buffer to drain.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

from ._frames import encode_text_frame, encode_text_frames

__all__ = ["DirectWriter", "direct_writer", "find_transport"]

_TRANSPORT_METHODS = ("write", "abort", "is_closing", "get_write_buffer_size")
_SANSIO_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"
_SANSIO_ATTRIBUTES = (
    "conn",
    "transport",
    "writable",
    "close_sent",
    "disconnected",
    "handshake_complete",
    "initial_response",
)


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


class DirectWriter:
    """Writes text frames straight to a uvicorn ``websockets-sansio`` connection.

    Build it with `direct_writer()`. `write()` and `write_many()` return
    ``False`` and write nothing unless the connection is open and its transport is
    writable; then the caller queues the frame and sends it through ASGI later.
    """

    __slots__ = ("_conn", "_open", "_protocol", "_transport")

    def __init__(self, protocol: Any, transport: Any, open_state: object) -> None:
        self._protocol = protocol
        self._conn = protocol.conn
        self._transport = transport
        self._open = open_state

    def ready(self) -> bool:
        """Whether a frame written now goes out in order, as uvicorn's ``send`` would."""
        protocol = self._protocol
        return (
            not protocol.close_sent
            and not protocol.disconnected
            and protocol.writable.is_set()
            and self._conn.state is self._open
            and not self._transport.is_closing()
        )

    def write(self, text: str) -> bool:
        """Write one text frame now if `ready()`; ``False`` (nothing written) otherwise."""
        # ready() inlined: this runs once per recipient of every broadcast.
        protocol = self._protocol
        transport = self._transport
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or self._conn.state is not self._open
            or transport.is_closing()
        ):
            return False
        try:
            transport.write(encode_text_frame(text))
        except (OSError, RuntimeError):
            return False  # the ASGI path reports the socket gone
        return True

    def write_many(self, texts: Iterable[str]) -> bool:
        """Write several text frames in one ``transport.write`` if `ready()`."""
        if not self.ready():
            return False
        return self.write_frames(encode_text_frames(texts))

    def write_batch(self, texts: deque[str], limit: int) -> tuple[int, int] | None:
        """Take frames from the left of ``texts`` until ``limit`` bytes are reached and
        write them at once, without checking `ready()` (the caller did). Returns their
        (bytes, count); ``None`` when the transport refused them (then ``texts`` is as it
        was)."""
        taken: list[str] = []
        frames: list[bytes] = []
        size = 0
        while texts and size < limit:
            taken.append(text := texts.popleft())
            frames.append(frame := encode_text_frame(text))
            size += len(frame)
        if self.write_frames(b"".join(frames)):
            return size, len(frames)
        texts.extendleft(reversed(taken))
        return None

    def write_frames(self, data: bytes) -> bool:
        """Write frames already encoded, without checking `ready()` (the caller did)."""
        try:
            self._transport.write(data)
        except (OSError, RuntimeError):
            return False  # the ASGI path reports the socket gone
        return True


def direct_writer(transport: object) -> DirectWriter | None:
    """A `DirectWriter` for ``transport`` when it carries uvicorn's sansio protocol.

    ``None`` for any other server or protocol, when the handshake is not complete, or when
    the connection negotiated an extension that rewrites frames (its frames would not be
    plain frames; tempest_ws's own fragment counter rewrites nothing).
    """
    get_protocol = getattr(transport, "get_protocol", None)
    module = sys.modules.get(_SANSIO_MODULE)
    if get_protocol is None or module is None:
        return None
    try:
        protocol = get_protocol()
    except NotImplementedError:  # asyncio's base classes, as test doubles subclass them
        return None
    sansio = getattr(module, "WebSocketsSansIOProtocol", None)
    if sansio is None or not isinstance(protocol, sansio):
        return None
    if not all(hasattr(protocol, name) for name in _SANSIO_ATTRIBUTES):
        return None
    if protocol.transport is not transport or not protocol.handshake_complete:
        return None
    if protocol.initial_response is not None:
        return None
    extensions = getattr(protocol.conn, "extensions", None)
    if extensions is None or not all(getattr(e, "passthrough", False) for e in extensions):
        return None
    from websockets.protocol import State

    return DirectWriter(protocol, transport, State.OPEN)
