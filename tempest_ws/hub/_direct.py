"""The direct write path: frames written straight to the transport below ASGI.

The router finds the transport a connection runs on (`tempest_ws.router._transport`).
`DirectWriter` writes to it for uvicorn's ``websockets-sansio``
protocol (what ``ws="auto"`` picks in current releases, 0.54 included): while the
connection is open, writable (the transport's buffer under its high-water mark) and
without extensions, a text frame built once per broadcast
([`tempest_ws.wire._frames`][tempest_ws.wire._frames]) is
written to the transport straight away -- the bytes uvicorn's own ``send`` would write,
without its task switch and per-socket encoding. Every frame is written whole and
synchronously, so it never interleaves with uvicorn's own control frames (keepalive
pings, close). Anywhere else -- another protocol or server, a negotiated extension, a
close started, a full buffer -- it declines and the caller uses the ASGI ``send`` path,
which waits for the buffer to drain.

Writes are coalesced per socket and per event-loop tick (uWebSockets calls it a cork):
the first frame a socket gets in a tick is written at once, as before, so a socket that
gets one frame per tick sees no change; the frames that follow it in the same tick are
held and written together, with one ``transport.write``, when the tick ends (one
callback per hub, `TickFlusher`), or at once when one more would pass
``CORK_BYTES`` (a frame that large is written at once). A
held frame is never delayed past the current tick, and every other write this library
makes to the socket (a queued batch, an ASGI send, the close frame) first writes what is
held, so the order on the wire is the order of the calls. Held bytes count as written,
as the transport's own buffer does: at most ``CORK_BYTES`` of them, held only while the
transport is under its high-water mark, so the transport still holds at most its mark
plus one write of ``CORK_BYTES`` (or one larger frame), as without coalescing.
When uvicorn itself sends a close frame (the peer's close, a keepalive timeout) before
the tick ends, the held frames are dropped rather than written after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any

from tempest_ws.wire._frames import encode_text_frame, encode_text_frames

__all__ = ["CORK_BYTES", "DirectWriter", "TickFlusher", "direct_writer", "write_batched"]

logger = logging.getLogger("tempest_ws.connection")

CORK_BYTES = 64 * 1024
"""At most this many bytes of frames are held for one socket within a tick."""

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


class TickFlusher:
    """Ends a tick for many `DirectWriter` objects with one ``call_soon`` callback.

    ``tick`` counts the ticks that had a direct write. The callback is scheduled by the
    first write of a tick (`arm()`); when it runs, the tick is over: it writes every
    writer's held frames in the order they first held one, and counts the next tick.
    """

    __slots__ = ("_held", "armed", "tick")

    def __init__(self) -> None:
        self.tick = 0
        self.armed: asyncio.AbstractEventLoop | None = None
        """The loop whose current tick ends with the flush callback, if any."""
        self._held: list[DirectWriter] = []

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make sure the current tick of ``loop`` (the running loop) ends with a call to
        the flush callback. Keyed by the loop: one closed before its callback ran does not
        leave the flusher waiting for it."""
        if self.armed is not loop:
            self.armed = loop
            loop.call_soon(self._end_tick)

    def hold(self, writer: DirectWriter, loop: asyncio.AbstractEventLoop) -> None:
        """``writer`` holds frames: write them when the tick ends."""
        self._held.append(writer)
        if self.armed is not loop:
            self.arm(loop)

    def _end_tick(self) -> None:
        self.armed = None
        self.tick += 1
        held, self._held = self._held, []
        for writer in held:
            try:
                writer.flush()
            except Exception:  # one socket's failure must not hold back the others
                logger.exception("flushing coalesced frames failed")


class DirectWriter:
    """Writes text frames straight to a uvicorn ``websockets-sansio`` connection.

    Build it with `direct_writer()`. `write()` and `write_many()` return
    ``False`` and write nothing unless the connection is open and its transport is
    writable; then the caller queues the frame and sends it through ASGI later.
    """

    __slots__ = (
        "_conn",
        "_cork",
        "_corked",
        "_flusher",
        "_loop",
        "_open",
        "_protocol",
        "_tick",
        "_transport",
    )

    def __init__(
        self, protocol: Any, transport: Any, open_state: object, flusher: TickFlusher
    ) -> None:
        self._protocol = protocol
        self._conn = protocol.conn
        self._transport = transport
        self._open = open_state
        self._flusher = flusher
        self._loop = asyncio.get_running_loop()
        self._tick = -1  # the flusher's tick of this socket's last direct write
        self._cork: list[bytes] | None = None  # frames held until the tick ends
        self._corked = 0  # their bytes

    @property
    def held(self) -> int:
        """Bytes of frames held until the end of the current tick."""
        return self._corked

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
        """Write one text frame if `ready()` (``False``, nothing written, otherwise):
        at once when it is this socket's first of the tick, else when the tick ends."""
        return self.write_frame(encode_text_frame(text))

    def write_frame(self, frame: bytes, batch: list[Any] | None = None) -> bool:
        """`write()` for a frame already encoded (`encode_text_frame`): a broadcast
        encodes its frame once and hands the same bytes to every socket.

        With ``batch``, a frame to be written at once is not written: the transport is
        appended to ``batch``, and the caller writes ``frame`` to every transport of it
        before anything else runs (`write_batched()`), so the system calls of a fan-out
        come one after another, without Python work between them."""
        # ready() inlined and cut to what can change while the connection is open: this
        # runs once per recipient of every broadcast. websockets' own state is not read
        # (a property call on one more object): every way uvicorn's sansio protocol
        # leaves OPEN after the handshake also sets ``close_sent`` or closes the
        # transport, in the same synchronous step (its ASGI close, keepalive timeout,
        # the peer's close, a parser error, shutdown, the connection lost).
        protocol = self._protocol
        transport = self._transport
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or transport.is_closing()
        ):
            return False
        size = len(frame)
        cork = self._cork
        if cork is not None:
            if self._corked + size <= CORK_BYTES:
                cork.append(frame)
                self._corked += size
                return True
            self.flush()  # one write of at most CORK_BYTES; the transport may pause now
            if not protocol.writable.is_set():
                return False  # the caller queues it, against the connection's budget
        flusher = self._flusher
        if self._tick == flusher.tick and size < CORK_BYTES:  # not the tick's first: hold
            self._cork = [frame]
            self._corked = size
            flusher.hold(self, self._loop)
            return True
        self._tick = flusher.tick
        if flusher.armed is not self._loop:
            flusher.arm(self._loop)
        if batch is not None:
            batch.append(transport)
            return True
        try:
            transport.write(frame)
        except (OSError, RuntimeError):
            return False  # the ASGI path reports the socket gone
        return True

    def flush(self) -> None:
        """Write the held frames now, in one ``transport.write``. Dropped instead when a
        close frame was sent meanwhile (they would follow it) or the socket is gone."""
        cork = self._cork
        if cork is None:
            return
        self._cork, self._corked = None, 0
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected or self._transport.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):  # the ASGI path reports it gone
            self._transport.write(cork[0] if len(cork) == 1 else b"".join(cork))

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
        """Write frames already encoded (after the held ones, in the same write), without
        checking `ready()` (the caller did)."""
        cork = self._cork
        if cork is not None:
            cork.append(data)
            data = b"".join(cork)
            self._cork, self._corked = None, 0
        try:
            self._transport.write(data)
        except (OSError, RuntimeError):
            return False  # the ASGI path reports the socket gone
        return True


def write_batched(batch: list[Any], frame: bytes) -> None:
    """Write ``frame`` to each transport `DirectWriter.write_frame` put in ``batch``.

    Each was ready a moment ago, and nothing but these writes ran since: a write can
    only pause or fail its own socket. A failing write is dropped, as a flush's is (the
    socket is gone: the ASGI path reports it)."""
    for transport in batch:
        try:
            transport.write(frame)
        except (OSError, RuntimeError):
            continue


def direct_writer(transport: object, flusher: TickFlusher | None = None) -> DirectWriter | None:
    """A `DirectWriter` for ``transport`` when it carries uvicorn's sansio protocol.

    ``None`` for any other server or protocol, when the handshake is not complete, or when
    the connection negotiated an extension that rewrites frames (its frames would not be
    plain frames; tempest_ws's own fragment counter rewrites nothing). ``flusher`` ends
    its ticks (shared by a hub's connections; a new one when not given).
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

    return DirectWriter(protocol, transport, State.OPEN, flusher or TickFlusher())
