"""``ConnectionState``: the life of one connection, and the moves it may make.

A connection is made ``CONNECTING`` (frames may be queued, none is written), becomes
``OPEN`` when the router starts delivering, ``CLOSING`` when a close starts (by either
side: nothing more is queued) and ``CLOSED`` when the close has finished. Every life
passes through ``CLOSING``, and a connection never goes back. `advance()` is the only
way a state changes; it raises `ConnectionStateError` for any other move. It runs at
those life changes only, never per frame.
"""

from __future__ import annotations

import enum

from tempest_ws.exceptions import ConnectionStateError

__all__ = ["ConnectionState", "advance"]


class ConnectionState(enum.Enum):
    """Where a [`WebSocketConnection`][tempest_ws.WebSocketConnection] is in its life.

    ``CONNECTING → OPEN → CLOSING → CLOSED``; a connection closed before it was started
    goes ``CONNECTING → CLOSING → CLOSED``. Read it as ``connection.state``.

    Attributes:
        CONNECTING: authenticated and registered, not started yet: frames sent to it are
            queued and go out, in order, once it opens.
        OPEN: frames are written as they come (or queued behind a backlog).
        CLOSING: a close started; no frame is queued any more, ``close_code`` is set,
            queued frames are flushed (1000, 1001, 1012) or dropped (any other code)
            before the close frame.
        CLOSED: the close frame was written or the transport aborted; a peer that
            closed or vanished brings the connection here at once (through
            ``CLOSING``). ``wait_closed()`` returns at once.
    """

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


_MOVES: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.CONNECTING: frozenset({ConnectionState.OPEN, ConnectionState.CLOSING}),
    ConnectionState.OPEN: frozenset({ConnectionState.CLOSING}),
    ConnectionState.CLOSING: frozenset({ConnectionState.CLOSED}),
    ConnectionState.CLOSED: frozenset(),
}


def advance(current: ConnectionState, target: ConnectionState) -> ConnectionState:
    """``target``, when a connection in state ``current`` may move there.

    Raises:
        ConnectionStateError: the move is not one of ``CONNECTING → OPEN``,
            ``CONNECTING → CLOSING``, ``OPEN → CLOSING``, ``CLOSING → CLOSED``.
    """
    if target not in _MOVES[current]:
        raise ConnectionStateError(current.name, target.name)
    return target
