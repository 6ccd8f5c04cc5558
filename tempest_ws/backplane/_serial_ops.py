"""Redis writes applied in call order, in batches, by one owned worker task.

Both presence halves queue their writes here, so a caller never waits on Redis (except
through an op's own future) and a stop can let what is queued finish, bounded in time.
Ops stay at the head of the queue while they are applied, so draining waits for them.

The worker hands ``apply`` a *run*: the op at the head of the queue and, if it is
batchable, the batchable ops right behind it, at most ``max_batch``. The owner sends a
run as one pipeline, so a backlog costs one round trip (and a few turns of the event
loop) per run instead of per op: after a mass disconnect a node removes thousands of
entries in a few dozen round trips, not thousands, however busy its loop is. A run keeps
the call order (a pipeline is applied in order), so a join queued after a leave of the
same user is still applied after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from itertools import islice
from typing import Generic, TypeVar

from tempest_ws._bounded import STOP_TIMEOUT, cancel_tasks, lost_cancellation

__all__ = ["SerialOps"]

Op = TypeVar("Op")


def _alone(op: object) -> bool:
    return False


class SerialOps(Generic[Op]):
    """A queue of ops and the worker that applies them while the link is up.

    Args:
        name: the worker task's name.
        timeout: a drain at stop waits this long; one run may take twice as long.
        errors: the exceptions that fail a run (each of its ops is handed to
            ``failed``) without stopping the worker.
        apply: applies a run of ops to Redis, in order; an op that fails on its own
            is the owner's to report (the rest of the run is applied).
        failed: told about an op that could not be applied (link down, error, timeout).
        before: called with each op just before it is applied, whatever the outcome.
        batchable: whether an op may share a run with its neighbours (default: none
            may; every run is one op).
        max_batch: bound on the ops of one run.
        stop_timeout: bound on stopping the worker (then it is abandoned, logged).
    """

    def __init__(
        self,
        *,
        name: str,
        timeout: float,
        errors: tuple[type[BaseException], ...],
        apply: Callable[[list[Op]], Awaitable[None]],
        failed: Callable[[Op, BaseException], None],
        before: Callable[[Op], None] | None = None,
        batchable: Callable[[Op], bool] = _alone,
        max_batch: int = 1,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self._name = name
        self._timeout = timeout
        self._errors = errors
        self._apply = apply
        self._failed = failed
        self._before = before
        self._batchable = batchable
        self._max_batch = max(1, max_batch)
        self._stop_timeout = stop_timeout
        self._queue: deque[Op] = deque()
        self._has_ops = asyncio.Event()
        self._drained = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._link_up: Callable[[], bool] = lambda: False

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Op]:
        """The queued ops, oldest first: the run being applied, then those behind it."""
        return iter(self._queue)

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

    def _next_run(self) -> list[Op]:
        """The head op, and the batchable ops right behind a batchable head."""
        queue = self._queue
        head = queue[0]
        if not self._batchable(head):
            return [head]
        run = [head]
        for op in islice(queue, 1, self._max_batch):
            if not self._batchable(op):
                break
            run.append(op)
        return run

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
                run = self._next_run()  # stays queued while applied: stop() waits for it
                if self._before is not None:
                    for op in run:
                        self._before(op)
                try:
                    if not self._link_up():
                        raise ConnectionError("redis pub/sub link is down")
                    async with asyncio.timeout(self._timeout * 2):
                        await self._apply(run)
                except self._errors as exc:
                    for op in run:
                        self._failed(op, exc)
                for _ in run:
                    queue.popleft()
