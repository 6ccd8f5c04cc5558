"""The last step of a server-side close: the close frame, bounded in time.

Which codes flush the queue first (`FLUSH_ON_CLOSE`), and `write_close_frame()`, which
sends the frame and aborts the transport when the peer does not take it in time. The
connection ([`tempest_ws.hub._connection`][tempest_ws.hub._connection]) runs it once, at
the end of ``CLOSING``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tempest_ws._types import Send
from tempest_ws.wire.codes import CloseCode

__all__ = ["FLUSH_ON_CLOSE", "write_close_frame"]

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
