"""The session: the read loop, and the handler's side of the socket (`HandlerChannel`).

The session owns reading. Under uvicorn's websockets-sansio protocol each frame is
taken as the server parses it ([`tempest_ws.router._feed`][tempest_ws.router._feed]);
everywhere else one loop (`HandlerChannel.read_loop()`) takes every inbound frame from
the server. Either way each frame is counted
as proof of life, asks [`judge()`][tempest_ws.router._verdict.judge] what the frame is
(a pure function: size, rate, heartbeat, refresh, built-in, valid or not) and acts on
the verdict: it answers and swallows heartbeat envelopes, rejects malformed frames with
an error envelope, closes for a limit, and hands the rest to the handler through a
bounded inbox (`HandlerChannel.deliver()`, the one place a frame enters it). Because
reading never depends on the handler, a handler that only pushes still has its client's
pongs seen, and a peer that vanishes is noticed at once.

Every inbound frame first spends a token from the connection's bucket (ping and pong
envelopes included): a client past ``WS_RATE_LIMIT_*`` is closed 4429 ``rate_limited``.
``auth.refresh`` envelopes are answered here too (see
[`tempest_ws.router._expiry`][tempest_ws.router._expiry]),
and so
are the router's built-in operations, with the typed validation of everything else when
the router has a message registry (see [`tempest_ws.router._inbound`][tempest_ws.router._inbound]).
Closes
the server's WebSocket layer makes on its own (1002 protocol error, 1007 invalid UTF-8,
1009 a message over ``ws_max_size``) reach the loop as a disconnect and are logged as
security events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocketDisconnect

from tempest_ws._types import Message, Receive, Send
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.observe._audit import frame_in, frame_out
from tempest_ws.router._answers import answer, peer_left, refresh, too_many_invalid
from tempest_ws.router._expiry import TokenLifetime
from tempest_ws.router._heartbeat import Beat
from tempest_ws.router._inbound import UNKNOWN, Inbound
from tempest_ws.router._ratelimit import TokenBucket
from tempest_ws.router._verdict import (
    PONG_FRAME,
    SessionLimits,
    Verdict,
    judge,
)
from tempest_ws.router.realtime import ENVELOPE_KEY
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import WSEnvelope
from tempest_ws.wire.messages import UNKNOWN_TYPE

if TYPE_CHECKING:
    from tempest_ws.observe.tracing import SessionTracer

logger = logging.getLogger("tempest_ws.session")

__all__ = ["INBOX_SIZE", "PONG_FRAME", "HandlerChannel", "SessionLimits"]

INBOX_SIZE = 64

_DELIVER, _PONG = Verdict.DELIVER, Verdict.PONG
_BUILTIN, _REFRESH = Verdict.BUILTIN, Verdict.REFRESH


def _disconnect(code: int) -> Message:
    return {"type": "websocket.disconnect", "code": code}


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def _wait_beside(shared: asyncio.Future[None]) -> None:
    """Wait until ``shared`` is done without cancelling it when this waiter is cancelled.

    Only a second concurrent ``receive`` takes this path; a spurious wake-up is harmless
    (the caller looks at the inbox again).
    """
    mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: asyncio.Future[None]) -> None:
        _wake(mine)

    shared.add_done_callback(wake)
    try:
        await mine
    finally:
        shared.remove_done_callback(wake)


class HandlerChannel:
    """The ASGI ``receive``/``send`` pair behind the ``WebSocket`` given to the handler.

    Until `attach()` it passes the handshake through to the server. After it,
    ``receive`` reads the session's inbox and ``send`` routes a close through the
    connection, so the handler's ``ws.close(code)`` and a server-side close are the same
    single, idempotent operation.

    Thousands of these sit idle at once, so nothing is made before it is needed: the
    inbox exists while frames wait in it, and a waiting side parks on one plain future.
    A close wakes every waiter and cancels the read loop's pending ``receive``.
    """

    __slots__ = (
        "_cancelled",
        "_connection",
        "_inbox",
        "_mail",
        "_raw_receive",
        "_raw_send",
        "_reader",
        "_reading",
        "_room",
        "tracer",
    )

    def __init__(self, receive: Receive, send: Send) -> None:
        self._raw_receive = receive
        self._raw_send = send
        self._connection: WebSocketConnection | None = None
        self._inbox: deque[Message] | None = None
        self._mail: asyncio.Future[None] | None = None  # the handler waits for a frame
        self._room: asyncio.Future[None] | None = None  # the read loop waits for room
        self._reader: asyncio.Task[Any] | None = None  # the read loop, parked in receive
        self._reading = False  # the read loop runs (parked in receive or not)
        self._cancelled = False  # the read loop's task was cancelled by the close
        self.tracer: SessionTracer | None = None  # set by the endpoint with tracing on

    def attach(self, connection: WebSocketConnection) -> None:
        """Switch from handshake pass-through to the guarded session."""
        self._connection = connection
        connection.add_close_callback(self)  # __call__: no bound method kept per connection

    @property
    def connection(self) -> WebSocketConnection:
        """The attached connection.

        Raises:
            RuntimeError: `attach()` has not been called.
        """
        if self._connection is None:
            raise RuntimeError("the channel is not attached to a connection")
        return self._connection

    @property
    def backlog(self) -> int:
        """Frames read from the socket and not yet taken by the handler."""
        inbox = self._inbox
        return len(inbox) if inbox is not None else 0

    @property
    def held_by_app(self) -> bool:
        """Whether the application, not the peer, is why nothing is being read.

        True while frames wait for the handler, or while the read loop waits for the
        application instead of the socket: for room in the handler's inbox, a built-in
        operation, or an event handler's turn (its queue is full). The heartbeat counts
        that time as proof of life: the peer's frames, pongs included, wait unread.
        """
        return self.backlog > 0 or (self._reading and self._reader is None)

    def __call__(self, _connection: WebSocketConnection) -> None:
        """The connection's close callback: the close started, so stop reading and wake
        whoever waits (runs synchronously)."""
        reader = self._reader
        if reader is not None:
            self._reader = None
            self._cancelled = True
            reader.cancel()
        _wake(self._mail)
        _wake(self._room)

    async def receive(self) -> Message:
        """Next frame for the handler, or a disconnect message once the connection closed."""
        connection = self._connection
        if connection is None:
            return await self._raw_receive()
        if self.tracer is not None:
            self.tracer.handler_done()
        while True:
            inbox = self._inbox
            if inbox:
                message = inbox.popleft()
                if not inbox:
                    self._inbox = None
                _wake(self._room)
                if self.tracer is not None:
                    self.tracer.handler_took(message)
                return message
            if connection.closing:
                return _disconnect(connection.close_code or CloseCode.ABNORMAL)
            mail = self._mail
            if mail is None or mail.done():
                mail = self._mail = asyncio.get_running_loop().create_future()
                try:
                    await mail
                finally:
                    if self._mail is mail:
                        self._mail = None
            else:
                await _wait_beside(mail)

    async def send(self, message: Message) -> None:
        """Send for the handler; a close goes through the connection."""
        connection = self._connection
        if connection is None:
            await self._raw_send(message)
            return
        if message["type"] == "websocket.close":
            await connection.close(
                message.get("code", CloseCode.NORMAL), message.get("reason") or ""
            )
            return
        if connection.closing:
            raise WebSocketDisconnect(connection.close_code or CloseCode.ABNORMAL)
        connection.flush()  # after the hub's frames written so far
        await self._raw_send(message)
        text = message.get("text")
        if text is not None:
            frame_out(text)

    def offer(self, message: Message) -> bool:
        """Put a frame in the inbox if it has room (``False``: `deliver()` it instead)."""
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        elif len(inbox) >= INBOX_SIZE:
            return False
        inbox.append(message)
        _wake(self._mail)
        return True

    def hold(self, held: bool) -> None:
        """Say whether a reader other than `read_loop()` waits for the application
        (see `held_by_app`)."""
        self._reading = held

    async def deliver(self, message: Message) -> None:
        """Put a frame in the inbox, waiting while the handler is ``INBOX_SIZE`` behind.

        The one place an inbound frame reaches the handler: the read loop calls it for
        every frame judged ``DELIVER`` (decoded, validated, annotated with its envelope),
        in arrival order. A frame delivered once the connection is closing is dropped.
        """
        connection = self._connection
        inbox = self._inbox
        while inbox is not None and len(inbox) >= INBOX_SIZE:
            if connection is not None and connection.closing:
                return
            room = self._room = asyncio.get_running_loop().create_future()
            try:
                await room
            finally:
                self._room = None
            inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(message)
        _wake(self._mail)

    async def read_loop(
        self,
        connection: WebSocketConnection,
        heartbeat: Beat[Any],
        limits: SessionLimits,
        *,
        bucket: TokenBucket | None = None,
        lifetime: TokenLifetime | None = None,
        inbound: Inbound | None = None,
    ) -> None:
        """Read until the peer leaves or the connection closes; guard every frame.

        Each frame: proof of life, then [`judge()`][tempest_ws.router._verdict.judge],
        then the verdict's step (`deliver()`, an answer, an operation, or a close).
        The wait for the next frame is the only await a close interrupts: the close
        callback cancels it (and only it), so no task or waiter exists per frame.
        """
        task = asyncio.current_task()
        receive = self._raw_receive
        invalid = 0
        tracer = self.tracer
        self._reading = True
        try:
            while True:
                if tracer is not None:
                    tracer.settle()
                if connection.close_code is not None:  # set when the close starts
                    return
                # Inline rather than a helper coroutine: an idle connection parks right here.
                self._reader = task
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if self._cancelled_by_close(task):
                        return
                    raise
                finally:
                    self._reader = None
                if message["type"] != "websocket.receive":
                    if message["type"] == "websocket.disconnect":
                        peer_left(connection, message)
                        return
                    continue
                heartbeat.touch()
                frame_in(message)
                if tracer is not None:
                    tracer.arrived()
                verdict = judge(message, limits, bucket, inbound)
                if verdict is _DELIVER:
                    if tracer is not None:
                        tracer.inspected(message, "deliver", None)
                    await self.deliver(message)
                    continue
                if verdict is _PONG:
                    continue
                if verdict is _BUILTIN or verdict is _REFRESH:
                    valid = await self.operation(connection, message, verdict, lifetime, inbound)
                else:
                    valid = answer(connection, message, verdict, bucket, limits, tracer)
                if connection.closing:
                    return
                if not valid:
                    invalid += 1
                    if tracer is not None:
                        tracer.invalid()
                    if invalid >= limits.max_invalid_frames:
                        too_many_invalid(connection, invalid)
                        return
        finally:
            self._reading = False

    def _cancelled_by_close(self, task: asyncio.Task[Any] | None) -> bool:
        """The read loop's ``receive`` was cancelled: by the close callback alone (the
        loop ends quietly), or by someone else too (the cancel propagates)."""
        if self._cancelled and task is not None:
            self._cancelled = False
            return task.uncancel() == 0
        return False

    def operation(
        self,
        connection: WebSocketConnection,
        message: Message,
        verdict: Verdict,
        lifetime: TokenLifetime | None,
        inbound: Inbound | None,
    ) -> Coroutine[Any, Any, bool]:
        """The built-in operation or ``auth.refresh`` to await (a plain function, so no
        coroutine is made besides the operation's own): ``False`` if it was invalid."""
        envelope: WSEnvelope = message[ENVELOPE_KEY]
        if self.tracer is not None:
            label = verdict.value
            if verdict is _BUILTIN and inbound is not None:
                label = inbound.kind_of(envelope)
                if label == UNKNOWN:  # refused by the event dispatch: name no span after it
                    self.tracer.rejected(UNKNOWN_TYPE, envelope)
                    label = "invalid"
            self.tracer.inspected(message, label, envelope)
        if verdict is _BUILTIN and inbound is not None:
            return inbound.run(connection, envelope)
        return refresh(connection, envelope, lifetime)
