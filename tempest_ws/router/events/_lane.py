"""One connection's event handlers: in order by default, a bounded few at once if asked.

The session's read loop validates a message and `Lane.submit()`s it; the connection's
handler task runs `Lane.serve()`, which takes the messages in arrival order. A message
for an ordinary handler is handled before the next one is taken; one for a
``concurrent=True`` handler starts in a task of its own, at most ``limit`` of them at
once per connection. Both waits push back on the read loop instead of growing a queue:
past ``QUEUE_SIZE`` waiting messages, or with ``limit`` handlers running, the loop reads
no further frame from that connection until there is room.

Nothing here exists for a connection that never sends a message to an event handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from tempest_ws.hub._connection import WebSocketConnection

__all__ = ["QUEUE_SIZE", "Lane"]

QUEUE_SIZE = 64
"""Validated messages one connection may have waiting for their handler."""

JobT = TypeVar("JobT")


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def _park(lane: Lane[JobT], slot: str) -> None:
    """Wait on a fresh future stored in ``slot`` until something wakes it."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    setattr(lane, slot, future)
    try:
        await future
    finally:
        setattr(lane, slot, None)


class Lane(Generic[JobT]):
    """The queue and the running handlers of one connection.

    Args:
        connection: the connection; once it is closing every wait ends and `serve()`
            returns after cancelling the handlers still running.
        limit: concurrent handlers allowed at once.
    """

    __slots__ = ("_jobs", "_running", "connection", "limit", "room", "slot", "work")

    def __init__(self, connection: WebSocketConnection, limit: int) -> None:
        self.connection = connection
        self.limit = limit
        self._jobs: deque[tuple[JobT, bool]] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self.work: asyncio.Future[None] | None = None  # serve() waits for a message
        self.room: asyncio.Future[None] | None = None  # submit() waits for room
        self.slot: asyncio.Future[None] | None = None  # serve() waits for a free slot

    @property
    def running(self) -> int:
        """Concurrent handlers running now."""
        return len(self._running)

    def wake(self) -> None:
        """Wake every wait (the connection is closing)."""
        _wake(self.work)
        _wake(self.room)
        _wake(self.slot)

    def offer(self, job: JobT, *, concurrent: bool) -> bool:
        """Queue ``job`` unless ``QUEUE_SIZE`` jobs wait (then ``False``: `submit()` it).

        The read loop offers nothing once the connection is closing, and `serve()` drops
        whatever still waits then.
        """
        jobs = self._jobs
        if len(jobs) >= QUEUE_SIZE:
            return False
        jobs.append((job, concurrent))
        work = self.work
        if work is not None and not work.done():
            work.set_result(None)
        return True

    async def submit(self, job: JobT, *, concurrent: bool) -> None:
        """Queue ``job``, waiting while ``QUEUE_SIZE`` jobs wait; dropped once closing."""
        while len(self._jobs) >= QUEUE_SIZE:
            if self.connection.closing:
                return
            await _park(self, "room")
        if not self.connection.closing:
            self._jobs.append((job, concurrent))
            _wake(self.work)

    async def serve(self, run: Callable[[JobT], Coroutine[Any, Any, None]]) -> None:
        """Run the jobs in order until the connection closes; ``run`` must not raise."""
        connection, jobs = self.connection, self._jobs
        closing = connection.closing_future()
        try:
            while not closing.done():
                if not jobs:
                    await _park(self, "work")
                    continue
                job, concurrent = jobs.popleft()
                _wake(self.room)
                if not concurrent:
                    await run(job)
                    continue
                while len(self._running) >= self.limit:
                    await _park(self, "slot")
                    if self.connection.closing:
                        return
                task = asyncio.create_task(run(job), name=f"tempest_ws event {connection}")
                self._running.add(task)
                task.add_done_callback(self._finished)
        finally:
            jobs.clear()
            running = list(self._running)
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        _wake(self.slot)
