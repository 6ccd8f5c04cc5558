"""The close of a connection, around its state: who is told, and the close frame.

`CloseSignals` holds what others wait on (the closing future, ``wait_closed()``
waiters, close callbacks) and fires them at the moves to ``CLOSING`` and ``CLOSED``.
`FLUSH_ON_CLOSE` names the codes that flush the queue first, and `write_close_frame()`
sends the frame and aborts the transport when the peer does not take it in time. The
connection ([`tempest_ws.hub._connection`][tempest_ws.hub._connection]) uses them once
per close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from tempest_ws._types import Send
from tempest_ws.wire.codes import CloseCode

__all__ = ["FLUSH_ON_CLOSE", "CloseSignals", "write_close_frame"]

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


class CloseSignals(Generic[T]):
    """What waits on one connection's close (the connection is ``T`` to its callbacks).

    Args:
        loop: the connection's event loop.
    """

    __slots__ = ("_callbacks", "_closing", "_code", "_finished", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._code: int | None = None  # set when the close starts
        # Both futures are made for a first waiter: most connections never have one.
        self._closing: asyncio.Future[int] | None = None
        self._finished: asyncio.Future[None] | None = None
        self._callbacks: list[Callable[[T], None]] = []

    @property
    def closing(self) -> asyncio.Future[int]:
        """Resolved with the close code on the move to ``CLOSING`` (already resolved
        when asked for after it)."""
        future = self._closing
        if future is None:
            future = self._closing = self._loop.create_future()
            if self._code is not None:
                future.set_result(self._code)
        return future

    def add_callback(self, callback: Callable[[T], None]) -> None:
        """Run ``callback(connection)`` once, synchronously, when the close starts."""
        self._callbacks.append(callback)

    def started(self, connection: T, code: int, connection_id: str) -> None:
        """The close started: resolve `closing`, run the callbacks (a failing one is
        logged, never propagated)."""
        self._code = code
        if self._closing is not None:
            self._closing.set_result(code)
        for callback in self._callbacks:
            try:
                callback(connection)
            except Exception:  # a callback's bug must not keep the socket open
                logger.exception("close callback failed for %s", connection_id)

    def finished(self) -> None:
        """The close finished: wake every `wait_finished()` waiter."""
        future = self._finished
        if future is not None and not future.done():
            future.set_result(None)

    async def wait_finished(self) -> None:
        """Wait for `finished()` (the caller checks first whether it already ran)."""
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
        # Shielded: one waiter being cancelled must not cancel the others' wait.
        await asyncio.shield(self._finished)
