"""``WebSocketConnection``: one socket's identity, its topics and its ordered send queue.

Hub fan-out never awaits a socket. Under uvicorn's ``websockets-sansio`` protocol a frame
for a connection with nothing queued and room in its transport buffer is written at once
([`tempest_ws.hub._direct`][tempest_ws.hub._direct]); otherwise it is queued,
and one writer task drains the queue in order, in writes of up to 64 KiB where the
transport allows. A tick's direct frames after the first are joined into one write at the
end of the tick. The queue is bounded in bytes and frames and must keep moving
([`SendBudget`][tempest_ws.hub._flow.SendBudget]), or the peer is a slow consumer, closed
1013. Closing is idempotent and bounded in time. The life is a
[`ConnectionState`][tempest_ws.hub._state.ConnectionState], moved forward at its four
moments only (never per frame).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tempest_ws._bounded import cancel_tasks
from tempest_ws._types import Send, UserId
from tempest_ws.exceptions import ConnectionClosedError
from tempest_ws.hub._closing import FLUSH_ON_CLOSE, CloseSignals, write_close_frame
from tempest_ws.hub._direct import TickFlusher, direct_writer
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._state import ConnectionState, advance
from tempest_ws.observe._audit import frame_out
from tempest_ws.wire._frames import frame_size
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import EnvelopeLike, encode_envelope

__all__ = ["WebSocketConnection"]

logger = logging.getLogger("tempest_ws.connection")

_BATCH_BYTES = 64 * 1024  # one direct write: the transport holds at most its mark plus this

_CONNECTING, _OPEN, _CLOSING, _CLOSED = ConnectionState  # the members, in order

_SLOTS = "__dict__ __weakref__ _budget _close_task _close_timeout _deep _direct _loop \
_moved_at _queue _queued _send _sending _signals _state _transport _wakeup _watchdog _writer \
close_code close_reason connected_at connection_id frames_sent metadata topics user_id user_key"


class WebSocketConnection:
    """One authenticated WebSocket: ids, user, topics, metadata and the send queue.

    Attributes:
        connection_id: unique id (a UUID4 hex string), in every log record about it.
        user_id: what the bearer resolver returned (``user_key`` is its ``str``).
        topics: topics this connection is subscribed to (maintained by the hub).
        metadata: free-form per-connection data for the application.
        connected_at: UTC time of the handshake.
        close_code: the code it was closed with, ``None`` while open.
        state: its life, a [`ConnectionState`][tempest_ws.ConnectionState] (read-only).
    """

    # Thousands live at once: slots, keeping ``__dict__`` (made only if another attribute is set).
    __slots__ = tuple(_SLOTS.split())

    def __init__(
        self,
        user_id: UserId,
        *,
        send: Send,
        queue_size: int = 1024,
        budget: SendBudget | None = None,
        close_timeout: float = 2.0,
        transport: asyncio.WriteTransport | None = None,
        metadata: dict[str, Any] | None = None,
        connection_id: str | None = None,
        flusher: TickFlusher | None = None,
    ) -> None:
        self.connection_id = connection_id or uuid.uuid4().hex
        self.user_id = user_id
        self.user_key = str(user_id)
        self.topics: set[str] = set()
        self.metadata: dict[str, Any] = metadata if metadata is not None else {}
        self.connected_at = datetime.now(UTC)
        self.close_code: int | None = None
        self.close_reason = ""
        self.frames_sent = 0
        self._send = send
        self._transport = transport
        self._direct = direct_writer(transport, flusher) if transport is not None else None
        self._state = _CONNECTING
        # The queue, the writer and the futures below are made when first needed: most
        # connections never need them, and thousands of idle sockets add up.
        self._queue: deque[str] | None = None
        self._budget = budget if budget is not None else SendBudget(max_frames=queue_size)
        self._queued = 0  # bytes of the frames in the queue, as they go on the wire
        self._moved_at = 0.0  # when queued frames last moved to the socket
        self._deep = False  # the queue is above its high-water mark
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._close_timeout = close_timeout
        self._sending = False  # the writer is in an ASGI send: no direct write may overtake it
        self._signals: CloseSignals[WebSocketConnection] = CloseSignals(self._loop)
        self._writer: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._close_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "open" if self.close_code is None else f"closed {self.close_code}"
        return f"<WebSocketConnection {self.connection_id} user={self.user_key} {state}>"

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life (read-only; it only moves forward)."""
        return self._state

    @property
    def closing(self) -> bool:
        """True once a close has started (by either side); no more frames are queued."""
        state = self._state
        return state is _CLOSING or state is _CLOSED

    @property
    def pending(self) -> int:
        """Frames queued and not yet written to the socket."""
        return len(self._queue) if self._queue is not None else 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of the frames queued and not yet written to the socket."""
        return self._queued

    def closing_future(self) -> asyncio.Future[int]:
        """A future resolved with the close code as soon as the close starts."""
        return self._signals.closing

    def add_close_callback(self, callback: Callable[[WebSocketConnection], None]) -> None:
        """Run ``callback(self)`` once, synchronously, when the close starts."""
        self._signals.add_callback(callback)

    def start(self) -> None:
        """``CONNECTING → OPEN`` (else nothing): frames queued so far, then every frame as
        it comes, in order. The writer task exists only while frames wait in the queue
        (and, where the server offers no direct write path, for the connection's life)."""
        if self._state is not _CONNECTING:
            return
        self._state = advance(_CONNECTING, _OPEN)
        queue = self._queue
        if queue and self._direct is not None and self._direct.write_many(queue):
            self._queue = None
            self._moved(self._queued, len(queue))
        elif self._direct is None or queue:
            self._wake_writer()

    def enqueue(self, frame: str) -> bool:
        """Deliver one serialized frame without waiting: write it now, or queue it.

        Returns ``False`` when the connection is closing or its queue would pass its
        byte or frame budget (a slow consumer, for the caller). Never blocks or raises.
        A frame larger than the byte budget is queued when nothing waits before it.
        """
        state = self._state
        if state is not _OPEN and state is not _CONNECTING:
            return False
        queue = self._queue
        if queue:
            budget = self._budget
            queued = self._queued + frame_size(frame)
            if queued > budget.max_bytes or len(queue) >= budget.max_frames:
                return False
        elif (
            state is _OPEN
            and not self._sending
            and self._direct is not None
            and self._direct.write(frame)
        ):
            self.frames_sent += 1
            frame_out(frame)
            return True
        else:
            if queue is None:
                queue = self._queue = deque()
            budget = self._budget
            queued = frame_size(frame)
            if not self._sending:  # a backlog forms: its clock starts (unless one is stuck)
                self._moved_at = self._loop.time()
        self._queued = queued
        queue.append(frame)
        if queued > budget.high_bytes or len(queue) > budget.high_frames:
            if not self._deep:
                self._deep = True
                budget.deep(self, self._loop.time(), self._moved_at)
            elif budget.holds(self):
                budget.pressure = True
        if state is _OPEN:
            self._wake_writer()
        frame_out(frame)
        return True

    def flush(self) -> None:
        """Write the frames held for the end of this tick now (before a handler's send)."""
        if self._direct is not None:
            self._direct.flush()

    def _wake_writer(self) -> None:
        writer = self._writer
        if writer is None or writer.done():
            self._writer = self._loop.create_task(
                self._write_loop(), name=f"tempest_ws writer {self.connection_id}"
            )
            self._moved_at = self._loop.time()
        else:
            self._notify_writer()
        if self._watchdog is None:  # the stall timer runs while a backlog exists
            due = self._moved_at + self._budget.stall_timeout
            self._watchdog = self._loop.call_at(due, self._check_stall)

    def _moved(self, size: int, frames: int) -> None:
        """``frames`` frames of ``size`` bytes left the queue for the socket."""
        self.frames_sent += frames
        self._queued -= size
        self._moved_at = self._loop.time()
        budget = self._budget
        if self._deep and self._queued <= budget.low_bytes and self.pending <= budget.low_frames:
            self._deep = False
            budget.drained(self)

    def _check_stall(self) -> None:
        """The stall timer: close 1013 when queued frames have not moved for too long."""
        self._watchdog = None
        if self._state is not _OPEN or not (self._queue or self._sending):
            return
        budget = self._budget
        due = self._moved_at + budget.stall_timeout
        if self._loop.time() < due:
            self._watchdog = self._loop.call_at(due, self._check_stall)
            return
        budget.stalled_out(self.connection_id, self._queued)
        self.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    def _notify_writer(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, envelope: EnvelopeLike) -> None:
        """Queue ``envelope`` for this connection, in order with hub deliveries.

        Raises:
            ConnectionClosedError: the connection is closing, or its queue was full (the
                connection is then closed 1013 as a slow consumer).
        """
        frame = encode_envelope(envelope)
        if self.enqueue(frame):
            return
        if not self.closing:
            self.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        raise ConnectionClosedError(
            f"connection {self.connection_id} is closed", code=CloseCode(self.close_code or 1006)
        )

    def close_soon(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start closing now without waiting: the close runs in a task this connection owns.

        Close callbacks (the hub's unregister) run before this returns.
        """
        left = self._begin_close(code, reason)
        if left is not None:
            self._close_task = asyncio.get_running_loop().create_task(
                self._finish_close(code, reason, was_open=left is _OPEN),
                name=f"tempest_ws close {self.connection_id}",
            )

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close with ``code`` and wait until the socket is closed or aborted.

        Idempotent: a second call (any code) waits for the first close to finish. A normal
        close first flushes queued frames; every other code drops them. Bounded by the
        close timeout, after which the transport is aborted where the server allows it.
        """
        left = self._begin_close(code, reason)
        if left is not None:
            self._close_task = asyncio.current_task()
            await self._finish_close(code, reason, was_open=left is _OPEN)
        else:
            await self.wait_closed()

    def peer_closed(self, code: int) -> None:
        """Record that the peer closed or vanished: nothing more will be written."""
        if self._begin_close(code, "peer closed") is not None:
            self._stop_writer()
            self._drop_queue()
            self._set_finished()

    async def wait_closed(self) -> None:
        """Wait until the close (started by anyone) has finished."""
        if self._state is not _CLOSED:
            await self._signals.wait_finished()

    def _set_finished(self) -> None:
        """The close finished: ``CLOSING → CLOSED``, and wake who waits for it."""
        self._state = advance(self._state, _CLOSED)
        self._signals.finished()

    def _begin_close(self, code: int, reason: str) -> ConnectionState | None:
        """Move to ``CLOSING``: the state it left, or ``None`` if a close had started."""
        left = self._state
        if left is _CLOSING or left is _CLOSED:
            return None
        self._state = advance(left, _CLOSING)
        self.close_code = int(code)
        self.close_reason = reason
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
        if self._deep:
            self._deep = False
            self._budget.drained(self)
        self._signals.started(self, int(code), self.connection_id)
        return left

    async def _finish_close(self, code: int, reason: str, *, was_open: bool) -> None:
        try:
            if code not in FLUSH_ON_CLOSE:
                self._stop_writer()
                self._drop_queue()  # free the memory now, not after the close frame
            elif was_open and self._queue:
                self._wake_writer()
            writer = self._writer
            if code in FLUSH_ON_CLOSE and writer is not None and not writer.done():
                self._notify_writer()
                await asyncio.wait({writer}, timeout=self._close_timeout)
            self._stop_writer()
            what = f"writer of {self.connection_id}"
            await cancel_tasks([self._writer], what, limit=self._close_timeout)
            if code in FLUSH_ON_CLOSE:  # what this tick holds goes before the close frame
                self.flush()
            await write_close_frame(
                self._send,
                code,
                reason,
                limit=self._close_timeout,
                abort=self.abort,
                connection_id=self.connection_id,
            )
        finally:
            self._drop_queue()
            self._set_finished()

    def _drop_queue(self) -> None:
        if self._queue is not None:
            self._queue.clear()  # the writer, if any, holds it too
        self._queue, self._queued = None, 0

    def abort(self) -> None:
        """Drop the TCP connection at once, where the server exposes its transport."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    def _stop_writer(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    async def _write_loop(self) -> None:
        send = self._send
        direct = self._direct
        if self._queue is None:
            self._queue = deque()
        queue = self._queue
        try:
            while True:
                if not queue:
                    if self._state is not _OPEN or direct is not None:
                        # With a direct path, enqueue() writes until a backlog forms again.
                        self._queue = None
                        return
                    self._wakeup = asyncio.get_running_loop().create_future()
                    await self._wakeup
                    self._wakeup = None
                    continue
                if direct is not None and direct.ready():
                    written = direct.write_batch(queue, _BATCH_BYTES)
                    if written is not None:
                        self._moved(*written)
                        continue
                # ``_sending``: enqueue() must not overtake this frame with a direct write.
                frame = queue.popleft()
                if direct is not None:
                    direct.flush()  # what this tick holds goes first
                self._sending = True
                try:
                    await send({"type": "websocket.send", "text": frame})
                finally:
                    self._sending = False
                self._moved(frame_size(frame), 1)
        except (OSError, RuntimeError) as exc:
            # The socket is gone (uvicorn raises ClientDisconnected, an OSError, or a
            # RuntimeError once closed): remove it now rather than on the next heartbeat.
            logger.debug("send failed on %s: %r", self.connection_id, exc)
            self.peer_closed(CloseCode.ABNORMAL)
