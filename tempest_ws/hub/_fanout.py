"""One frame to many connections in one pass: the hub's fan-out loop.

A broadcast encodes its frame once. `offer_all` hands it to every recipient: the bytes
to those that can take them on the direct write path, the text to the others' queues.

At thousands of sockets the loop's cost is mostly what it touches per recipient. A
socket's first frame of a tick, with nothing held and nothing in its transport's buffer,
is written here with the checks `DirectWriter.write_frame` makes, reading only the
connection, its writer and the transport: the transport's empty buffer stands for
uvicorn's ``writable`` (its protocol is resumed below the buffer's low-water mark), and
the connection's open state and the transport for uvicorn's ``close_sent`` and
``disconnected``. uvicorn's protocol object is not read: it is one more object per
recipient, and the costliest to reach. That holds because, in every release this
library supports, each way uvicorn's websockets-sansio protocol sends a close frame after
the handshake also closes the transport in the same step (the peer's close, a keepalive
timeout, a parser error, shutdown), except the application's own ``websocket.close``;
and this library sends that one only after the connection has left its open state.
Every other recipient goes through ``write_frame`` (a tick's later frame is held for
the tick's end) or, when that declines, through ``enqueue``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._direct import write_batched
from tempest_ws.hub._state import ConnectionState
from tempest_ws.observe._audit import frames_out
from tempest_ws.wire._frames import encode_text_frame, frame_size

__all__ = ["offer_all"]

_OPEN = ConnectionState.OPEN


def offer_all(
    recipients: Iterable[WebSocketConnection], frame: str, refused: list[WebSocketConnection]
) -> int:
    """`WebSocketConnection.enqueue()` of ``frame`` for each recipient, in one pass.

    A recipient that can take the frame on the direct write path (open, no backlog,
    a direct writer) gets the frame's bytes without the call to ``enqueue``; every other
    recipient, and one whose direct write declined, goes through its ``enqueue``. The
    bytes and the size are computed once, for all. Recipients refused while not closing
    (slow consumers) are appended to ``refused``. Returns how many got the frame.

    A socket's first frame of a tick is written in the loop (see the module docstring);
    the direct writes `DirectWriter.write_frame` batches come after it, one system call
    after another.
    """
    data: bytes | None = None
    size = -1
    batch: list[Any] = []
    direct_count = 0
    delivered = 0
    flusher: Any = None
    loop: Any = None
    tick = -1
    written = 0
    for connection in recipients:
        # The connection's private state is read here as its own ``enqueue`` reads it:
        # this loop is the hot path of every broadcast.
        if connection._state is _OPEN:
            direct = connection._direct
            if direct is not None and connection._backlog is None:  # nothing waits
                if data is None:
                    data = encode_text_frame(frame)
                    flusher = direct._flusher
                    tick = flusher.tick
                    loop = direct._loop
                transport = direct._transport
                if (
                    direct._tick != tick
                    and direct._cork is None
                    and direct._flusher is flusher
                    and not transport.is_closing()
                    and not transport.get_write_buffer_size()
                ):
                    # The socket's first direct write of this tick, with nothing held and
                    # nothing buffered: written here, as write_frame() would write it.
                    # An empty transport buffer means uvicorn's protocol is not paused
                    # (it resumes below its low-water mark); its "disconnected", and every
                    # close frame it sends on its own, come with a closing transport.
                    direct._tick = tick
                    try:
                        transport.write(data)
                    except (OSError, RuntimeError):
                        pass  # the socket is gone: enqueue() below declines or queues it
                    else:
                        connection.frames_sent += 1
                        written += 1
                        continue
                elif direct.write_frame(data, batch):
                    connection.frames_sent += 1
                    direct_count += 1
                    continue
        if size < 0:
            size = frame_size(frame)
        if connection.enqueue(frame, size):
            delivered += 1
        elif not connection.closing:
            refused.append(connection)
    if batch:
        write_batched(batch, data)  # type: ignore[arg-type]  # set before the first append
    if written and flusher.armed is not loop:
        flusher.arm(loop)  # a direct write this tick: it ends with the flusher
    direct_count += written
    if direct_count:
        frames_out(frame, direct_count)
    return delivered + direct_count
