"""The close of a connection, around its state: who is told, and the close frame.

`add_callback()` and `run_callbacks()` keep and run a connection's close callbacks
(no list per connection: most have one callback, shared by every connection of a hub).
`FLUSH_ON_CLOSE` names the codes that flush the queue first, and `write_close_frame()`
sends the frame and aborts the transport when the peer does not take it in time. The
connection ([`tempest_ws.hub._connection`][tempest_ws.hub._connection]) uses them once
per close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from tempest_ws._types import Send
from tempest_ws.wire.codes import CloseCode

__all__ = ["FLUSH_ON_CLOSE", "Callbacks", "add_callback", "run_callbacks", "write_close_frame"]

T = TypeVar("T")

logger = logging.getLogger("tempest_ws.connection")

FLUSH_ON_CLOSE = frozenset({CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.SERVICE_RESTART})
"""Codes whose close writes the frames already queued before the close frame."""

_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes


async def write_close_frame(
    send: Send,
    code: int,
    reason: str,
    *,
    limit: float,
    abort: Callable[[], None],
    connection_id: str,
) -> None:
    """Send the close frame (``reason`` cut to what the frame can hold); call ``abort``
    when it is not written within ``limit`` seconds. A socket already gone is not an error."""
    payload = reason.encode()[:_MAX_REASON_BYTES].decode(errors="ignore")
    try:
        await asyncio.wait_for(
            send({"type": "websocket.close", "code": int(code), "reason": payload}), limit
        )
    except TimeoutError:
        logger.warning(
            "close frame for %s not written within %.1fs; aborting transport",
            *(connection_id, limit),
        )
        abort()
    except (OSError, RuntimeError):
        pass  # already gone: the server reports the socket closed


Callbacks = Callable[[T], None] | tuple[Callable[[T], None], ...] | None
"""A connection's close callbacks, kept small: none, the one callback itself (most
connections have only the hub's, one bound method shared by every connection), or a
tuple of them in the order they were added."""


def add_callback(callbacks: Callbacks[T], callback: Callable[[T], None]) -> Callbacks[T]:
    """``callbacks`` with ``callback`` added last (nothing is changed in place)."""
    if callbacks is None:
        return callback
    if isinstance(callbacks, tuple):
        return (*callbacks, callback)
    return (callbacks, callback)


def run_callbacks(callbacks: Callbacks[T], connection: T, connection_id: str) -> None:
    """Run each callback with ``connection``, in order; a failing one is logged, never
    propagated (a callback's bug must not keep the socket open)."""
    if callbacks is None:
        return
    for callback in callbacks if isinstance(callbacks, tuple) else (callbacks,):
        try:
            callback(connection)
        except Exception:
            logger.exception("close callback failed for %s", connection_id)
