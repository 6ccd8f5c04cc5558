"""``WebSocketConnection``: one socket's identity, its topics and its ordered send queue.

Hub fan-out never awaits a socket. Under uvicorn's ``websockets-sansio`` protocol a frame
for a connection with nothing queued and room in its transport buffer is written at once
([`tempest_ws.hub._direct`][tempest_ws.hub._direct]); otherwise it is queued, and one
writer task drains the queue in order ([`Backlog`][tempest_ws.hub._backlog.Backlog]).
A tick's direct frames after the first are joined into one write at the end of the tick.
The queue is bounded in bytes and frames and must keep moving
([`SendBudget`][tempest_ws.hub._flow.SendBudget]), or the peer is a slow consumer, closed
1013. Closing is idempotent and bounded in time. The life is a
[`ConnectionState`][tempest_ws.hub._state.ConnectionState], moved forward at its four
moments only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tempest_ws._bounded import cancel_tasks
from tempest_ws._types import Send, UserId
from tempest_ws.exceptions import ConnectionClosedError
from tempest_ws.hub._backlog import Backlog
from tempest_ws.hub._closing import (
    FLUSH_ON_CLOSE,
    Callbacks,
    add_callback,
    run_callbacks,
    write_close_frame,
)
from tempest_ws.hub._direct import TickFlusher, direct_writer
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._state import ConnectionState, advance
from tempest_ws.observe._audit import frame_out
from tempest_ws.wire._frames import frame_size
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import EnvelopeLike, encode_envelope

__all__ = ["WebSocketConnection"]

_CONNECTING, _OPEN, _CLOSING, _CLOSED = ConnectionState  # the members, in order

_SLOTS = "__dict__ __weakref__ _backlog _budget _callbacks _close_task _close_timeout _closing \
_connected _direct _finished _loop _metadata _send _state _topics _transport close_code \
close_reason connection_id frames_sent user_id user_key"


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

    # Thousands live at once, most idle: slots (``__dict__`` is made only if another
    # attribute is set), and the backlog, close futures, topics and metadata made lazily.
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
        self._topics: set[str] | None = None  # made when first asked for
        self._metadata = metadata  # the empty dict is made when first asked for
        self._connected = time.time()  # ``connected_at``, as a float until asked for
        self.close_code: int | None = None
        self.close_reason = ""
        self.frames_sent = 0
        self._send = send
        self._transport = transport
        self._direct = direct_writer(transport, flusher) if transport is not None else None
        self._state = _CONNECTING
        self._loop = asyncio.get_running_loop()
        self._budget = budget if budget is not None else SendBudget(max_frames=queue_size)
        self._backlog: Backlog | None = None  # made when a frame must wait, let go when idle
        self._close_timeout = close_timeout
        self._callbacks: Callbacks[WebSocketConnection] = None
        self._closing: asyncio.Future[int] | None = None  # made for a first waiter
        self._finished: asyncio.Future[None] | None = None  # likewise
        self._close_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "open" if self.close_code is None else f"closed {self.close_code}"
        return f"<WebSocketConnection {self.connection_id} user={self.user_key} {state}>"

    @property
    def topics(self) -> set[str]:
        """Topics this connection is subscribed to (a ``set``, maintained by the hub)."""
        topics = self._topics
        if topics is None:
            topics = self._topics = set()
        return topics

    @topics.setter
    def topics(self, value: set[str]) -> None:
        self._topics = value

    @property
    def connected_at(self) -> datetime:
        """UTC time of the handshake (a ``datetime``)."""
        return datetime.fromtimestamp(self._connected, UTC)

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form per-connection data for the application (a ``dict``, settable)."""
        metadata = self._metadata
        if metadata is None:
            metadata = self._metadata = {}
        return metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._metadata = value

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
        backlog = self._backlog
        return 0 if backlog is None else backlog.pending

    @property
    def pending_bytes(self) -> int:
        """Bytes of the frames queued and not yet written to the socket."""
        backlog = self._backlog
        return 0 if backlog is None else backlog.queued

    def closing_future(self) -> asyncio.Future[int]:
        """A future resolved with the close code as soon as the close starts."""
        future = self._closing
        if future is None:
            future = self._closing = self._loop.create_future()
            if self.close_code is not None:  # the close started already
                future.set_result(self.close_code)
        return future

    def add_close_callback(self, callback: Callable[[WebSocketConnection], None]) -> None:
        """Run ``callback(self)`` once, synchronously, when the close starts."""
        self._callbacks = add_callback(self._callbacks, callback)

    def start(self) -> None:
        """``CONNECTING → OPEN`` (else nothing): frames queued so far, then every frame as
        it comes, in order. The writer task exists only while frames wait in the queue
        (and, where the server offers no direct write path, for the connection's life)."""
        if self._state is not _CONNECTING:
            return
        self._state = advance(_CONNECTING, _OPEN)
        backlog = self._backlog
        if backlog is None:
            if self._direct is not None:
                return
            backlog = self._new_backlog()  # no direct path: the writer sends every frame
        backlog.start(self)
        self._let_go(backlog)

    def enqueue(self, frame: str, size: int = -1) -> bool:
        """Deliver one serialized frame without waiting: write it now, or queue it.

        Returns ``False`` when the connection is closing or its queue would pass its
        byte or frame budget (a slow consumer, for the caller). Never blocks or raises.
        A frame larger than the byte budget is queued when nothing waits before it.
        ``size``: the frame's `frame_size()`, if the caller knows it (a fan-out's).
        """
        state = self._state
        if state is _OPEN:
            backlog = self._backlog
            if (
                (backlog is None or self._let_go(backlog))
                and (direct := self._direct) is not None
                and direct.write(frame)
            ):
                self.frames_sent += 1
                frame_out(frame)
                return True
        elif state is not _CONNECTING:
            return False
        backlog = self._backlog
        if backlog is None:
            backlog = self._new_backlog()
        if not backlog.add(
            self, frame, frame_size(frame) if size < 0 else size, wake=state is _OPEN
        ):
            return False
        frame_out(frame)
        return True

    def _new_backlog(self) -> Backlog:
        backlog = self._backlog = Backlog(
            send=self._send, direct=self._direct, budget=self._budget, loop=self._loop
        )
        return backlog

    def _let_go(self, backlog: Backlog) -> bool:
        """Forget ``backlog`` if it is idle (stopping its stall timer); whether it was."""
        if not backlog.idle():
            return False
        backlog.settle(self)
        self._backlog = None
        return True

    def flush(self) -> None:
        """Write the frames held for the end of this tick now (before a handler's send)."""
        if self._direct is not None:
            self._direct.flush()

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
            backlog = self._backlog
            if backlog is not None:
                backlog.stop_writer()
                backlog.drop()
            self._set_finished()

    async def wait_closed(self) -> None:
        """Wait until the close (started by anyone) has finished."""
        if self._state is not _CLOSED:
            if self._finished is None:
                self._finished = self._loop.create_future()
            # Shielded: one waiter being cancelled must not cancel the others' wait.
            await asyncio.shield(self._finished)

    def _set_finished(self) -> None:
        """The close finished: ``CLOSING → CLOSED``, and wake who waits for it."""
        self._state = advance(self._state, _CLOSED)
        finished = self._finished
        if finished is not None and not finished.done():
            finished.set_result(None)

    def _begin_close(self, code: int, reason: str) -> ConnectionState | None:
        """Move to ``CLOSING``: the state it left, or ``None`` if a close had started."""
        left = self._state
        if left is _CLOSING or left is _CLOSED:
            return None
        self._state = advance(left, _CLOSING)
        self.close_code = int(code)
        self.close_reason = reason
        if self._backlog is not None:
            self._backlog.settle(self)
        closing = self._closing
        if closing is not None and not closing.done():
            closing.set_result(self.close_code)
        callbacks, self._callbacks = self._callbacks, None  # they run once
        run_callbacks(callbacks, self, self.connection_id)
        return left

    async def _finish_close(self, code: int, reason: str, *, was_open: bool) -> None:
        backlog = self._backlog  # no new one is made once closing
        try:
            if backlog is not None:
                await self._end_backlog(backlog, code, was_open=was_open)
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
            if backlog is not None:
                backlog.drop()
            self._set_finished()

    async def _end_backlog(self, backlog: Backlog, code: int, *, was_open: bool) -> None:
        """Write the queued frames first (a flushing ``code``) or drop them; stop the writer."""
        if code not in FLUSH_ON_CLOSE:
            backlog.stop_writer()
            backlog.drop()  # free the memory now, not after the close frame
        elif was_open and backlog.queue:
            backlog.wake(self)
        writer = backlog.writer
        if code in FLUSH_ON_CLOSE and writer is not None and not writer.done():
            backlog.notify()
            await asyncio.wait({writer}, timeout=self._close_timeout)
        backlog.stop_writer()
        what = f"writer of {self.connection_id}"
        await cancel_tasks([backlog.writer], what, limit=self._close_timeout)

    def abort(self) -> None:
        """Drop the TCP connection at once, where the server exposes its transport."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()
