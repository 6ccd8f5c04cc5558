"""Redis writes applied one at a time, in order, by one owned worker task.

Both presence halves queue their writes here, so a caller never waits on Redis (except
through an op's own future) and a stop can let what is queued finish, bounded in time.
An op stays at the head of the queue while it is applied, so draining waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from tempest_ws._bounded import STOP_TIMEOUT, cancel_tasks, lost_cancellation

__all__ = ["SerialOps"]

Op = TypeVar("Op")


class SerialOps(Generic[Op]):
    """A queue of ops and the worker that applies them while the link is up.

    Args:
        name: the worker task's name.
        timeout: a drain at stop waits this long; one op may take twice as long.
        errors: the exceptions that fail one op (handed to ``failed``) without
            stopping the worker.
        apply: applies one op to Redis.
        failed: told about an op that could not be applied (link down, error, timeout).
        before: called with each op just before it is applied, whatever the outcome.
        stop_timeout: bound on stopping the worker (then it is abandoned, logged).
    """

    def __init__(
        self,
        *,
        name: str,
        timeout: float,
        errors: tuple[type[BaseException], ...],
        apply: Callable[[Op], Awaitable[None]],
        failed: Callable[[Op, BaseException], None],
        before: Callable[[Op], None] | None = None,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self._name = name
        self._timeout = timeout
        self._errors = errors
        self._apply = apply
        self._failed = failed
        self._before = before
        self._stop_timeout = stop_timeout
        self._queue: deque[Op] = deque()
        self._has_ops = asyncio.Event()
        self._drained = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._link_up: Callable[[], bool] = lambda: False

    def __len__(self) -> int:
        return len(self._queue)

    def start(self, link_up: Callable[[], bool]) -> None:
        """Start the worker; ops are applied only while ``link_up()`` is true."""
        self._link_up = link_up
        self._worker = asyncio.create_task(self._run(), name=self._name)

    def push(self, op: Op) -> None:
        """Queue ``op`` after every op queued before it."""
        self._queue.append(op)
        self._drained.clear()
        self._has_ops.set()

    async def stop(self) -> list[Op]:
        """Let queued ops finish (bounded, and only while the link is up), stop the
        worker, and return the ops that were never applied."""
        if self._queue and self._link_up():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await self._drained.wait()
        worker, self._worker = self._worker, None
        await cancel_tasks([worker], "redis write worker", limit=self._stop_timeout)
        left = list(self._queue)
        self._queue.clear()
        return left

    async def _run(self) -> None:
        queue = self._queue
        while True:
            lost_cancellation()
            if not queue:
                self._drained.set()
            await self._has_ops.wait()
            self._has_ops.clear()
            while queue:
                lost_cancellation()
                op = queue[0]  # stays queued while applied: stop() waits for it
                if self._before is not None:
                    self._before(op)
                try:
                    if not self._link_up():
                        raise ConnectionError("redis pub/sub link is down")
                    async with asyncio.timeout(self._timeout * 2):
                        await self._apply(op)
                except self._errors as exc:
                    self._failed(op, exc)
                queue.popleft()
