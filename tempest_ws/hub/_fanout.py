"""One frame to many connections in one pass: the hub's fan-out loop.

A broadcast encodes its frame once. `offer_all` hands it to every recipient: the bytes
to those that can take them on the direct write path, the text to the others' queues.
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

    The direct writes come after the loop, one system call after another.
    """
    data: bytes | None = None
    size = -1
    batch: list[Any] = []
    direct_count = 0
    delivered = 0
    for connection in recipients:
        # The connection's private state is read here as its own ``enqueue`` reads it:
        # this loop is the hot path of every broadcast.
        if connection._state is _OPEN:
            direct = connection._direct
            if direct is not None and connection._backlog is None:  # nothing waits
                if data is None:
                    data = encode_text_frame(frame)
                if direct.write_frame(data, batch):
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
    if direct_count:
        frames_out(frame, direct_count)
    return delivered + direct_count
