"""``WebSocketConnection``: one socket's identity, its topics and its ordered send queue.

Hub fan-out never awaits a socket. Under uvicorn's ``websockets-sansio`` protocol a frame
for a connection with nothing queued and room in its transport buffer is written at once
([`tempest_ws.hub._direct`][tempest_ws.hub._direct]); otherwise it is queued,
and one writer task drains the queue in order ([`Backlog`][tempest_ws.hub._backlog.Backlog]).
A tick's direct frames after the first are joined into one write at the end of the tick.
The queue is bounded in bytes and frames and must keep moving
([`SendBudget`][tempest_ws.hub._flow.SendBudget]), or the peer is a slow consumer, closed
1013. Closing is idempotent and bounded in time. The life is a
[`ConnectionState`][tempest_ws.hub._state.ConnectionState], moved forward at its four
moments only (never per frame).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from tempest_ws._bounded import cancel_tasks
from tempest_ws._types import Send, UserId
from tempest_ws.exceptions import ConnectionClosedError
from tempest_ws.hub._backlog import Backlog
from tempest_ws.hub._closing import FLUSH_ON_CLOSE, CloseSignals, write_close_frame
from tempest_ws.hub._direct import TickFlusher, direct_writer, write_batched
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._state import ConnectionState, advance
from tempest_ws.observe._audit import frame_out, frames_out
from tempest_ws.wire._frames import encode_text_frame
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import EnvelopeLike, encode_envelope

__all__ = ["WebSocketConnection", "offer_all"]

_CONNECTING, _OPEN, _CLOSING, _CLOSED = ConnectionState  # the members, in order

_SLOTS = "__dict__ __weakref__ _backlog _close_task _close_timeout _direct _loop _metadata \
_send _signals _state _topics _transport close_code close_reason connected_at connection_id \
frames_sent user_id user_key"


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
        self._topics: set[str] | None = None  # made when first asked for
        self._metadata = metadata  # the empty dict is made when first asked for
        self.connected_at = datetime.now(UTC)
        self.close_code: int | None = None
        self.close_reason = ""
        self.frames_sent = 0
        self._send = send
        self._transport = transport
        self._direct = direct_writer(transport, flusher) if transport is not None else None
        self._state = _CONNECTING
        self._loop = asyncio.get_running_loop()
        # The backlog's queue, writer and timers are made when first needed: most
        # connections never need them, and thousands of idle sockets add up.
        self._backlog = Backlog(
            send=send,
            direct=self._direct,
            budget=budget if budget is not None else SendBudget(max_frames=queue_size),
            loop=self._loop,
        )
        self._close_timeout = close_timeout
        self._signals: CloseSignals[WebSocketConnection] = CloseSignals(self._loop)
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
        return self._backlog.pending

    @property
    def pending_bytes(self) -> int:
        """Bytes of the frames queued and not yet written to the socket."""
        return self._backlog.queued

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
        self._backlog.start(self)

    def enqueue(self, frame: str) -> bool:
        """Deliver one serialized frame without waiting: write it now, or queue it.

        Returns ``False`` when the connection is closing or its queue would pass its
        byte or frame budget (a slow consumer, for the caller). Never blocks or raises.
        A frame larger than the byte budget is queued when nothing waits before it.
        """
        state = self._state
        if state is not _OPEN and state is not _CONNECTING:
            return False
        backlog = self._backlog
        if (
            not backlog.queue
            and state is _OPEN
            and not backlog.sending
            and self._direct is not None
            and self._direct.write_frame(encode_text_frame(frame))
        ):
            self.frames_sent += 1
            frame_out(frame)
            return True
        if not backlog.add(self, frame, wake=state is _OPEN):
            return False
        frame_out(frame)
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
            self._backlog.stop_writer()
            self._backlog.drop()
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
        self._backlog.settle(self)
        self._signals.started(self, int(code), self.connection_id)
        return left

    async def _finish_close(self, code: int, reason: str, *, was_open: bool) -> None:
        backlog = self._backlog
        try:
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
            backlog.drop()
            self._set_finished()

    def abort(self) -> None:
        """Drop the TCP connection at once, where the server exposes its transport."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()


def offer_all(
    recipients: Iterable[WebSocketConnection], frame: str, refused: list[WebSocketConnection]
) -> int:
    """`WebSocketConnection.enqueue()` of ``frame`` for each recipient, in one pass.

    A recipient that can take the frame on the direct write path (open, nothing queued,
    a direct writer) gets the frame's bytes, encoded once for all of them, without the
    call to ``enqueue``; every other recipient, and one whose direct write declined, goes
    through its ``enqueue``. Recipients refused while not closing (slow consumers) are
    appended to ``refused``. Returns how many got the frame.

    The frames written at once are written after the loop, one system call after
    another (`write_batched`): between two of them only C code runs, so a system call
    does not evict what the next recipient's checks need from the CPU caches.
    """
    data: bytes | None = None
    batch: list[Any] = []
    direct_count = 0
    delivered = 0
    for connection in recipients:
        if connection._state is _OPEN:
            direct = connection._direct
            if direct is not None:
                backlog = connection._backlog
                if not backlog.queue and not backlog.sending:
                    if data is None:
                        data = encode_text_frame(frame)
                    if direct.write_frame(data, batch):
                        connection.frames_sent += 1
                        direct_count += 1
                        continue
        if connection.enqueue(frame):
            delivered += 1
        elif not connection.closing:
            refused.append(connection)
    if batch:
        write_batched(batch, data)  # type: ignore[arg-type]  # set before the first append
    if direct_count:
        frames_out(frame, direct_count)
    return delivered + direct_count
