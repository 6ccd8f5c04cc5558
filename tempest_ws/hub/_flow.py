"""Flow control: per-connection byte and time budgets, and bounded producer backpressure.

One `SendBudget` per hub, shared by its connections. No I/O here, and nothing on
the fast path: a frame written straight to an idle socket never touches it. Only a
connection with a backlog (frames in its queue) counts bytes against the budget:

* **bytes** -- a connection may queue ``max_bytes`` of frames (as they go on the wire)
  and ``max_frames`` frames; one more and it is a slow consumer, closed 1013. A single
  frame larger than the budget still goes out when nothing is queued before it.
* **time** -- a connection whose queued frames have not moved to the socket for
  ``stall_timeout`` seconds is closed 1013 (the connection runs that timer).
* **producers** -- a queue above half its budget is *deep*. A delivery that queued a frame
  on a deep connection waits (in `SendBudget.relieve()`) until no deep connection is
  left above three eighths of its budget, so writers run and fast readers catch up
  instead of being closed in a burst. The wait is bounded: one delivery waits at most
  ``producer_wait`` seconds; a connection holds producers for at most ``producer_wait``
  each time it runs deep (so only while it reads an eighth of its budget per
  ``producer_wait``: 64 KiB/s by default); and one that has not moved a frame for
  ``producer_wait`` when it runs deep (a stalled reader) holds nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import TypeAlias

__all__ = ["SendBudget"]

logger = logging.getLogger("tempest_ws.connection")

Consumer: TypeAlias = Hashable
"""A connection, as the budget knows it: only a key to hold and forget (the connection
module imports this one, so this one does not import it)."""


class SendBudget:
    """The flow-control bounds of one hub's connections (see the module docstring).

    Args:
        max_bytes: bytes of frames one connection may queue.
        max_frames: frames one connection may queue.
        stall_timeout: seconds queued frames may sit without moving.
        producer_wait: longest wait of one delivery for deep queues; 0 turns producer
            backpressure off.
    """

    __slots__ = (
        "_clear",
        "_holding",
        "high_bytes",
        "high_frames",
        "low_bytes",
        "low_frames",
        "max_bytes",
        "max_frames",
        "pressure",
        "producer_wait",
        "stall_timeout",
        "stalled",
    )

    def __init__(
        self,
        *,
        max_bytes: int = 1 << 20,
        max_frames: int = 1024,
        stall_timeout: float = 5.0,
        producer_wait: float = 2.0,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        self.high_bytes = max_bytes // 2
        # Draining from half to three eighths of the budget ends an episode: a reader
        # holds producers while it reads at least an eighth of it per producer_wait.
        self.low_bytes = max_bytes * 3 // 8
        self.high_frames = max_frames // 2
        self.low_frames = max_frames * 3 // 8
        self.stall_timeout = stall_timeout
        self.producer_wait = producer_wait
        self.pressure = False
        """Set when a frame was queued on a connection producers wait for."""
        self.stalled = 0
        """Connections closed because their queue did not move for ``stall_timeout``."""
        # Deep connections producers wait for, with the time each ran deep (oldest first).
        self._holding: dict[Consumer, float] = {}
        self._clear: asyncio.Future[None] | None = None

    def deep(self, connection: Consumer, now: float, moved_at: float) -> None:
        """``connection``'s queue went above the high-water mark at ``now``; its frames
        last moved (or its backlog formed) at ``moved_at``."""
        wait = self.producer_wait
        if wait > 0 and now - moved_at < wait:
            self._holding[connection] = now
            self.pressure = True

    def holds(self, connection: Consumer) -> bool:
        """Whether producers wait for ``connection`` (deep, allowance not spent)."""
        return connection in self._holding

    def drained(self, connection: Consumer) -> None:
        """``connection`` went below the low-water mark, or closed: nobody waits for it."""
        holding = self._holding
        if holding.pop(connection, None) is not None and not holding:
            clear = self._clear
            if clear is not None and not clear.done():
                clear.set_result(None)

    def stalled_out(self, connection_id: str, queued: int) -> None:
        """Count and log a connection whose queue did not move for ``stall_timeout``
        (the connection closes itself 1013)."""
        self.stalled += 1
        logger.warning(
            "connection %s is a slow consumer (%d bytes queued, none sent for %.1fs); closing",
            *(connection_id, queued, self.stall_timeout),
        )

    async def relieve(self) -> None:
        """Wait until no deep connection holds producers, at most ``producer_wait``."""
        self.pressure = False
        holding = self._holding
        if not holding:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + self.producer_wait
        while True:
            expiry = self._expire(now)
            if expiry is None or now >= deadline:
                return
            clear = self._clear
            if clear is None or clear.done():
                clear = self._clear = loop.create_future()
            await asyncio.wait((clear,), timeout=min(expiry, deadline) - now)
            now = loop.time()

    def _expire(self, now: float) -> float | None:
        """Forget connections whose allowance is spent; the next expiry, if any."""
        holding = self._holding
        wait = self.producer_wait
        while holding:
            connection, since = next(iter(holding.items()))
            if since + wait > now:
                return since + wait
            del holding[connection]
        return None
