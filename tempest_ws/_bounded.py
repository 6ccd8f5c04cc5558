"""Bounded waits for the stop paths: no ``stop()``, ``close()`` or ``aclose()`` hangs.

Every stop in the package awaits its tasks and collaborators through `bounded()` and
`cancel_tasks()`. A wait that outlasts its bound (``STOP_TIMEOUT`` unless the owner
was built with another ``stop_timeout``) is abandoned: the caller goes on, the work is
left to finish on its own (not cancelled: a collaborator's ``stop`` keeps doing its own
bounded steps, which a cancellation would cut short), and a WARNING on
``tempest_ws.shutdown`` names what was abandoned. Cancelling a task is not always enough
to end it: redis-py shields some teardown from cancellation (``PubSub.aclose``), and on
Python 3.11 ``asyncio.wait_for``, which redis-py uses for every write, can lose a
``cancel()`` that arrives as the write completes. A loop that is stopped by cancellation
calls `lost_cancellation()` at the top of each turn so that such a lost ``cancel()``
still ends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, Final, TypeVar

from tempest_ws.exceptions import ConfigurationError

__all__ = ["STOP_TIMEOUT", "bounded", "cancel_tasks", "check_stop_timeout", "lost_cancellation"]

logger = logging.getLogger("tempest_ws.shutdown")

STOP_TIMEOUT: Final = 5.0
"""Seconds one step of a stop (a task, a connection, a collaborator) may take."""

T = TypeVar("T")


def check_stop_timeout(stop_timeout: float) -> float:
    """Return ``stop_timeout``; raise `ConfigurationError` unless it is positive."""
    if not stop_timeout > 0:
        raise ConfigurationError("stop_timeout must be positive")
    return stop_timeout


async def bounded(work: Awaitable[T], what: str, *, limit: float) -> T | None:
    """Await ``work`` for at most ``limit`` seconds and return its result.

    ``work`` runs as a task of its own, so even work that ignores cancellation cannot
    hold the caller. If it is not done in time it is abandoned (left running), a
    WARNING names ``what``, and ``None`` is returned. An exception ``work`` raised in time is
    raised here. Cancelling the caller cancels ``work`` too.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done():
        return task.result()
    _abandon(task, what, limit)
    return None


async def cancel_tasks(
    tasks: Iterable[asyncio.Future[Any] | None],
    what: str,
    *,
    limit: float,
) -> None:
    """Cancel ``tasks`` and wait at most ``limit`` seconds for all of them to end.

    Their results and exceptions are consumed (as ``gather(return_exceptions=True)``
    does). A task still running after ``limit`` is abandoned (its cancellation stays
    requested), with a WARNING naming ``what`` and the task.
    """
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    if not pending:
        return
    done, still = await asyncio.wait(pending, timeout=limit)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: an ending task's error is not news at stop
    for task in still:
        _abandon(task, f"{what} ({_name(task)})", limit)


def lost_cancellation() -> None:
    """Raise ``CancelledError`` if the current task was cancelled and carries on anyway.

    A loop stopped by ``Task.cancel()`` calls this at the top of each turn, outside any
    ``asyncio.timeout`` block: there a pending cancellation request means the
    ``CancelledError`` was swallowed on the way (see the module docstring).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


def _abandon(task: asyncio.Future[Any], what: str, limit: float) -> None:
    task.add_done_callback(_consume)
    logger.warning("stop: abandoned %s, still running after %.1fs", what, limit)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
