"""A connection's backlog: the frames it could not write at once, and their writer.

A frame goes straight to the socket when the connection has nothing queued and its
transport has room (``hub/_direct.py``); otherwise it waits here, in order. One writer
task drains the queue, in writes of up to 64 KiB where the transport allows, through the
ASGI ``send`` otherwise. The queue is bounded in bytes and frames, and must keep moving
([`SendBudget`][tempest_ws.hub._flow.SendBudget]): the stall timer closes a peer whose
frames have not moved for too long 1013 (a slow consumer). The queue, the writer and its
timers exist only while a backlog does, and so does the `Backlog` itself: a connection
makes one when a frame must wait and lets it go once it is `idle()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from tempest_ws._types import Send
from tempest_ws.hub._direct import DirectWriter
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._state import ConnectionState
from tempest_ws.wire._frames import frame_size
from tempest_ws.wire.codes import CloseCode

__all__ = ["Backlog", "Owner"]

logger = logging.getLogger("tempest_ws.connection")

_BATCH_BYTES = 64 * 1024  # one direct write: the transport holds at most its mark plus this

_OPEN = ConnectionState.OPEN


class Owner(Protocol):
    """The connection a `Backlog` belongs to (a ``WebSocketConnection``)."""

    connection_id: str
    frames_sent: int

    def __hash__(self) -> int:
        """The budget keys the connections it holds by the connection."""

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""

    def close_soon(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start closing without waiting."""

    def peer_closed(self, code: int) -> None:
        """The socket is gone: nothing more will be written."""


class Backlog:
    """The queued frames of one connection, their writer task and their stall timer.

    The connection passes itself (``owner``) to each call instead of being kept here, so
    a connection and its backlog make no reference cycle: the connection lives as long
    as it is referenced, or while its writer or its stall timer runs, as before.

    Attributes:
        queue: the frames waiting, oldest first (``None`` while there is no backlog).
        queued: bytes of those frames, as they go on the wire.
        sending: the writer is in an ASGI send: no direct write may overtake it.
        writer: the writer task, while one runs.
    """

    __slots__ = (
        "budget",
        "deep",
        "direct",
        "loop",
        "moved_at",
        "queue",
        "queued",
        "send",
        "sending",
        "wakeup",
        "watchdog",
        "writer",
    )

    def __init__(
        self,
        *,
        send: Send,
        direct: DirectWriter | None,
        budget: SendBudget,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.send = send
        self.direct = direct
        self.budget = budget
        self.loop = loop
        self.queue: deque[str] | None = None
        self.queued = 0
        self.moved_at = 0.0  # when queued frames last moved to the socket
        self.deep = False  # the queue is above its high-water mark
        self.sending = False
        self.watchdog: asyncio.TimerHandle | None = None
        self.writer: asyncio.Task[None] | None = None
        self.wakeup: asyncio.Future[None] | None = None

    @property
    def pending(self) -> int:
        """Frames queued and not yet written to the socket."""
        return len(self.queue) if self.queue is not None else 0

    def idle(self) -> bool:
        """Nothing queued, held or in flight, and no writer: the connection may let it go
        (it makes a new one for its next backlog)."""
        writer = self.writer
        return (
            not self.queue
            and not self.sending
            and not self.deep
            and (writer is None or writer.done())
        )

    def add(self, owner: Owner, frame: str, size: int, *, wake: bool) -> bool:
        """Queue ``frame`` of ``size`` bytes on the wire (`frame_size()`); ``False`` when
        the queue would pass its byte or frame budget.

        A frame larger than the byte budget is queued when nothing waits before it.
        ``wake``: the connection is open, so the writer runs.
        """
        queue = self.queue
        budget = self.budget
        if queue:
            queued = self.queued + size
            if queued > budget.max_bytes or len(queue) >= budget.max_frames:
                return False
        else:
            if queue is None:
                queue = self.queue = deque()
            queued = size
            if not self.sending:  # a backlog forms: its clock starts (unless one is stuck)
                self.moved_at = self.loop.time()
        self.queued = queued
        queue.append(frame)
        if queued > budget.high_bytes or len(queue) > budget.high_frames:
            if not self.deep:
                self.deep = True
                budget.deep(owner, self.loop.time(), self.moved_at)
            elif budget.holds(owner):
                budget.pressure = True
        if wake:
            self.wake(owner)
        return True

    def start(self, owner: Owner) -> None:
        """The connection opened: write what was queued before, directly if it can."""
        queue = self.queue
        if queue and self.direct is not None and self.direct.write_many(queue):
            self.queue = None
            self.moved(owner, self.queued, len(queue))
        elif self.direct is None or queue:
            self.wake(owner)

    def wake(self, owner: Owner) -> None:
        """Start the writer, or wake the one waiting; arm the stall timer."""
        writer = self.writer
        if writer is None or writer.done():
            self.writer = self.loop.create_task(
                self._write_loop(owner), name=f"tempest_ws writer {owner.connection_id}"
            )
            self.moved_at = self.loop.time()
        else:
            self.notify()
        if self.watchdog is None:  # the stall timer runs while a backlog exists
            due = self.moved_at + self.budget.stall_timeout
            self.watchdog = self.loop.call_at(due, self._check_stall, owner)

    def notify(self) -> None:
        """Wake a writer that waits for frames."""
        waiter = self.wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def moved(self, owner: Owner, size: int, frames: int) -> None:
        """``frames`` frames of ``size`` bytes left the queue for the socket."""
        owner.frames_sent += frames
        self.queued -= size
        self.moved_at = self.loop.time()
        budget = self.budget
        if self.deep and self.queued <= budget.low_bytes and self.pending <= budget.low_frames:
            self.deep = False
            budget.drained(owner)

    def settle(self, owner: Owner) -> None:
        """A close started: stop the stall timer and leave the budget's deep set."""
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            watchdog.cancel()
        if self.deep:
            self.deep = False
            self.budget.drained(owner)

    def stop_writer(self) -> None:
        """Cancel the writer task, if one runs."""
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()

    def drop(self) -> None:
        """Forget every queued frame."""
        if self.queue is not None:
            self.queue.clear()  # the writer, if any, holds it too
        self.queue, self.queued = None, 0

    def _check_stall(self, owner: Owner) -> None:
        """The stall timer: close 1013 when queued frames have not moved for too long."""
        self.watchdog = None
        if owner.state is not _OPEN or not (self.queue or self.sending):
            return
        budget = self.budget
        due = self.moved_at + budget.stall_timeout
        if self.loop.time() < due:
            self.watchdog = self.loop.call_at(due, self._check_stall, owner)
            return
        budget.stalled_out(owner.connection_id, self.queued)
        owner.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    async def _write_loop(self, owner: Owner) -> None:
        send = self.send
        direct = self.direct
        if self.queue is None:
            self.queue = deque()
        queue = self.queue
        try:
            while True:
                if not queue:
                    if owner.state is not _OPEN or direct is not None:
                        # With a direct path, enqueue() writes until a backlog forms again.
                        self.queue = None
                        return
                    self.wakeup = asyncio.get_running_loop().create_future()
                    await self.wakeup
                    self.wakeup = None
                    continue
                if direct is not None and direct.ready():
                    written = direct.write_batch(queue, _BATCH_BYTES)
                    if written is not None:
                        self.moved(owner, *written)
                        continue
                # ``sending``: enqueue() must not overtake this frame with a direct write.
                frame = queue.popleft()
                if direct is not None:
                    direct.flush()  # what this tick holds goes first
                self.sending = True
                try:
                    await send({"type": "websocket.send", "text": frame})
                finally:
                    self.sending = False
                self.moved(owner, frame_size(frame), 1)
        except (OSError, RuntimeError) as exc:
            # The socket is gone (uvicorn raises ClientDisconnected, an OSError, or a
            # RuntimeError once closed): remove it now rather than on the next heartbeat.
            logger.debug("send failed on %s: %r", owner.connection_id, exc)
            owner.peer_closed(CloseCode.ABNORMAL)
