"""The pipelined append queue of [`RedisHistory`][tempest_ws.history.redis.RedisHistory].

Appends reach Redis in call order, so one node's appends take offsets in call order. An
append made while none is waiting or in flight, after a round that carried one append
alone (a sequential publisher's case), is sent by its caller, in its own step
(``append``): its write reaches the socket before the work the caller's previous message
scheduled runs, and Redis answers meanwhile. Other appends wait in the queue; one task
sends them, pipelining whatever accumulated while the previous round was in flight, so
a batch costs one round trip (concurrent callers keep batching: one of them sending
alone would split each batch in two round trips).
Consecutive appends of a batch to one topic go in one script call (`runs`): Redis reads
the epoch, counts the offsets and renews expiries once for all of them. The task is
started by the first queued append and waits for the next one when idle (starting a task
per append would cost more than the pipelining saves); ``aclose`` stops it.

Every batch (and every append sent by its caller) is bounded by ``timeout``; a failed
batch fails every append waiting in it at once. Nothing is retried (a retried append
could store a message twice). An append whose caller was cancelled before its batch was
sent is dropped, never stored; one whose caller was cancelled after it was sent may be
stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from tempest_ws._bounded import STOP_TIMEOUT, cancel_tasks, lost_cancellation
from tempest_ws.exceptions import BackplaneError
from tempest_ws.history.base import Position

__all__ = [
    "Append",
    "AppendQueue",
    "Run",
    "appended",
    "describe",
    "position_of",
    "positions",
    "runs",
]

logger = logging.getLogger("tempest_ws.history")

MAX_BATCH = 256

Append = tuple[tuple[bytes, bytes], list[bytes], "asyncio.Future[Position]"]
"""One queued append: the topic's keys, its message's script arguments (the frame, and
to publish too the channel, packet head and stamped frame head; encoded once, when
queued), the caller's future."""

Run = tuple[tuple[bytes, bytes], list[bytes], int]
"""Consecutive appends of one topic and one kind, for one script call: the keys, the
messages' arguments one after the other, how many messages."""


def runs(batch: list[Append]) -> list[Run]:
    """``batch`` cut into runs of consecutive appends to one topic with as many
    arguments each (all publish, or none does), in order."""
    out: list[Run] = []
    last_keys: tuple[bytes, bytes] | None = None
    width = 0
    for keys, fields, _ in batch:
        if keys == last_keys and len(fields) == width:
            run_keys, args, count = out[-1]
            args += fields
            out[-1] = (run_keys, args, count + 1)
        else:
            out.append((keys, list(fields), 1))
            last_keys, width = keys, len(fields)
    return out


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for logs and error messages."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def position_of(raw: Any) -> Position:
    """The position a script returned as ``{epoch, offset, ...}``."""
    epoch = raw[0]
    return Position(int(raw[1]), epoch.decode() if isinstance(epoch, bytes) else str(epoch))


def appended(raw: Any) -> Position:
    """The position the append script returned as ``"<epoch> <offset>"``."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    epoch, _, offset = text.rpartition(" ")
    return Position(int(offset), epoch)


def positions(raw: Any, count: int) -> list[Position]:
    """The positions of ``count`` appends of one script call, from its answer."""
    first = appended(raw)
    if count == 1:
        return [first]
    return [Position(first.offset + i, first.epoch) for i in range(count)]


class AppendQueue:
    """Appends waiting for Redis, sent in call order by one task.

    Args:
        send: sends one batch, returns one position per append (an exception for an
            append Redis refused); raising fails the whole batch.
        timeout: bound on each batch, in seconds.
        max_pending: appends waiting before ``submit`` raises at once.
    """

    def __init__(
        self,
        send: Callable[[list[Append]], Awaitable[list[Position | Exception]]],
        *,
        timeout: float,
        max_pending: int,
        errors: tuple[type[BaseException], ...] = (OSError, TimeoutError),
    ) -> None:
        self._send = send
        self.timeout = timeout
        self.max_pending = max_pending
        self._errors = errors
        self._pending: deque[Append] = deque()
        self._batch: list[Append] = []  # in flight: failed too if closed meanwhile
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._sending = False  # a batch, or an append sent by its caller, is in flight
        # The last round carried one append and none came meanwhile: the caller is alone.
        self._alone = True

    async def append(self, keys: tuple[bytes, bytes], args: list[bytes]) -> Position:
        """Append and return the position: sent at once by the caller when it is alone
        (see the module docstring), else queued through ``submit``.

        Raises:
            BackplaneError: Redis failed, refused the append or did not answer within
                ``timeout``; ``max_pending`` appends already waiting (at once).
        """
        if self._sending or self._pending or not self._alone:
            return await self.submit(keys, args)
        self._sending = True
        try:
            async with asyncio.timeout(self.timeout):
                done: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
                (reply,) = await self._send([(keys, args, done)])
        except self._errors as exc:  # Redis is unreachable: fail everyone waiting now
            logger.warning("history append failed (%s)", describe(exc))
            error = BackplaneError(f"redis history append failed ({describe(exc)})")
            self.fail(error)
            raise error from exc
        finally:
            self._sending = False
            if self._pending:  # queued meanwhile: their turn, and batches from now on
                self._alone = False
                self._start()
        if isinstance(reply, Exception):
            raise BackplaneError(f"redis history append failed ({describe(reply)})")
        return reply

    def submit(self, keys: tuple[bytes, bytes], args: list[bytes]) -> asyncio.Future[Position]:
        """Queue one append; return the future of its position, set once its batch was
        answered (a plain call, not a coroutine: the caller awaits the future itself;
        cancelling that wait before the batch is sent drops the append).

        Raises:
            BackplaneError: ``max_pending`` appends already waiting (at once); the future
                gets the `BackplaneError` of a batch that failed.
        """
        pending = self._pending
        if len(pending) >= self.max_pending:
            raise BackplaneError(f"{len(pending)} history appends already waiting for redis")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Position] = loop.create_future()
        pending.append((keys, args, done))
        self._start()
        return done

    def _start(self) -> None:
        """Wake the task (started first when it is not running on this loop)."""
        flusher = self._flusher
        loop = asyncio.get_running_loop()
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._flusher = loop.create_task(self._flush(), name="tempest_ws history appends")
        elif self._wake is not None:
            self._wake.set()

    async def _flush(self) -> None:
        pending = self._pending
        wake = self._wake
        try:
            while True:
                lost_cancellation()  # a cancel swallowed by a Redis call still stops us
                while pending and not self._sending:  # else woken when it is answered
                    await self._send_next()
                if wake is None:  # pragma: no cover - set before the task starts
                    return
                await wake.wait()
                wake.clear()
        except Exception:  # the task boundary: no caller may wait forever on a bug
            logger.exception("history append task failed")
            self.fail(BackplaneError("redis history append failed (internal error)"))

    async def _send_next(self) -> None:
        pending = self._pending
        if len(pending) == 1:  # a sequential publisher's case
            batch = [pending.popleft()]
            if batch[0][2].done():
                return
        else:
            count = min(len(pending), MAX_BATCH)
            batch = [
                item for item in (pending.popleft() for _ in range(count)) if not item[2].done()
            ]
            if not batch:
                return
        self._batch = batch
        self._sending = True
        try:
            async with asyncio.timeout(self.timeout):
                replies = await self._send(batch)
        except self._errors as exc:  # Redis is unreachable: fail everyone waiting now
            logger.warning("history append of %d failed (%s)", len(batch), describe(exc))
            self.fail(BackplaneError(f"redis history append failed ({describe(exc)})"), batch)
            return
        finally:
            self._sending = False
            self._alone = len(batch) == 1 and not pending
        for (_, _, done), reply in zip(batch, replies, strict=True):
            if done.done():
                continue
            if isinstance(reply, Exception):
                error = BackplaneError(f"redis history append failed ({describe(reply)})")
                done.set_exception(error)
            else:
                done.set_result(reply)
        self._batch = []

    def fail(self, error: BackplaneError, batch: list[Append] | None = None) -> None:
        """Fail ``batch``, the batch in flight and every append waiting, with ``error``."""
        for _, _, done in [*(batch or ()), *self._batch, *self._pending]:
            if not done.done():
                done.set_exception(error)
        self._pending.clear()
        self._batch = []

    async def aclose(self, error: BackplaneError) -> None:
        """Stop the task and fail what waits with ``error``. Idempotent; a later
        append starts a new task. An append its caller sent is failed by its connection
        closing, or answered first."""
        flusher, self._flusher = self._flusher, None
        self.fail(error)  # first: an append answered meanwhile hands nothing to a new task
        await cancel_tasks([flusher], "history append flusher", limit=STOP_TIMEOUT)
        self.fail(error)
