"""The read path with no task: frames are taken as the server parses them.

uvicorn's ``websockets-sansio`` protocol hands every ASGI receive event to an
``asyncio.Queue`` (``put_nowait``) that its ``receive()`` reads. `Feed.install()` puts a
`Feed` in that queue's place once the connection is registered, so each frame is guarded
the moment it arrives, in the server's own callback: proof of life,
[`judge()`][tempest_ws.router._verdict.judge], heartbeat envelopes answered and
swallowed, error envelopes, closes for a limit, and `HandlerChannel.offer()` into the
handler's inbox. An idle connection has no task parked in ``receive()``: the endpoint's
own task runs the handler.

A frame whose handling must wait (a built-in operation, ``auth.refresh``, an event
handler's full queue, a full handler inbox) starts a task that awaits it, then handles
the frames that arrived meanwhile in their order, and ends when none is left. While it
runs, reading from the socket is paused (``transport.pause_reading()``), as uvicorn does
while its own queue is unread, so a handler that stops reading holds a bounded amount
of memory and its client is not closed for it.

`Feed.install()` returns ``None`` for every other server or protocol (or a protocol
in a state it does not expect): the endpoint then runs
[`HandlerChannel.read_loop()`][tempest_ws.router._session.HandlerChannel.read_loop]
in its task and the handler in a second one.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections import deque
from collections.abc import Awaitable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from tempest_ws._types import Message
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.observe._audit import frame_in
from tempest_ws.router._answers import answer, peer_left, too_many_invalid
from tempest_ws.router._expiry import TokenLifetime
from tempest_ws.router._heartbeat import Beat
from tempest_ws.router._inbound import Inbound
from tempest_ws.router._ratelimit import TokenBucket
from tempest_ws.router._server_guard import protocol_name
from tempest_ws.router._session import HandlerChannel
from tempest_ws.router._verdict import SessionLimits, Verdict, judge
from tempest_ws.router.realtime import ENVELOPE_KEY
from tempest_ws.wire.codes import CloseCode

if TYPE_CHECKING:
    from tempest_ws.observe.tracing import SessionTracer

__all__ = ["DRAIN_TASK_NAME", "Feed"]

logger = logging.getLogger("tempest_ws.session")

DRAIN_TASK_NAME = "tempest_ws frames"
"""The name of the task that awaits a frame's handling (one shared string)."""

_DELIVER, _PONG = Verdict.DELIVER, Verdict.PONG
_BUILTIN, _REFRESH = Verdict.BUILTIN, Verdict.REFRESH


@types.coroutine
def _resumed(coroutine: Coroutine[Any, Any, Any], first: Any) -> Generator[Any, Any, Any]:
    """Carry on ``coroutine``, already stepped once (it yielded ``first``), in a task."""
    yielded = first
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # noqa: BLE001 - thrown into the coroutine, as await does
            try:
                yielded = coroutine.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                yielded = coroutine.send(sent)
            except StopIteration as done:
                return done.value


async def _finish(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _installable(protocol: Any) -> bool:
    """Whether ``protocol`` is uvicorn's websockets-sansio protocol in the state the
    swap expects: handshake through, nothing closed, its queue a plain ``asyncio.Queue``."""
    if protocol is None or protocol_name(protocol) != "websockets-sansio":
        return False
    if type(getattr(protocol, "queue", None)) is not asyncio.Queue:
        return False
    transport: Any = getattr(protocol, "transport", None)
    if not callable(getattr(transport, "pause_reading", None)):
        return False
    if not callable(getattr(transport, "resume_reading", None)) or transport.is_closing():
        return False
    if not isinstance(getattr(protocol, "read_paused", None), bool):
        return False
    return (
        protocol.handshake_complete is True
        and not protocol.close_sent
        and not (protocol.disconnected)
    )


class Feed:
    """Stands in for the server protocol's receive queue: takes each ASGI receive event
    as it is put (see the module docstring).

    ``get()``/``empty()``/``qsize()`` keep the queue's contract for a caller of the
    protocol's ``receive()`` (the router makes none while installed): nothing is held
    here, so the queue looks empty, and ``get()`` waits on the queue `stop()` gives the
    protocol, which receives the events from then on. The protocol's own queue is
    dropped once its events are taken (its three deques are most of an idle
    connection's memory in the server).
    """

    __slots__ = (
        "_backlog",
        "_context",
        "_invalid",
        "_paused",
        "_queue",
        "_task",
        "bucket",
        "channel",
        "connection",
        "heartbeat",
        "inbound",
        "lifetime",
        "limits",
        "protocol",
        "tracer",
    )

    def __init__(
        self,
        protocol: Any,
        channel: HandlerChannel,
        connection: WebSocketConnection,
        heartbeat: Beat[Any],
        limits: SessionLimits,
        *,
        bucket: TokenBucket | None,
        lifetime: TokenLifetime | None,
        inbound: Inbound | None,
    ) -> None:
        self.protocol = protocol
        self.channel = channel
        self.connection = connection
        self.heartbeat = heartbeat
        self.limits = limits
        self.bucket = bucket
        self.lifetime = lifetime
        self.inbound = inbound
        self.tracer: SessionTracer | None = channel.tracer
        self._queue: asyncio.Queue[Message] | None = None  # made if get() or stop() needs it
        self._backlog: deque[Message] | None = None  # frames behind an awaited one
        self._task: asyncio.Task[None] | None = None  # awaits them (only while some wait)
        self._context: contextvars.Context | None = None
        self._paused = bool(protocol.read_paused)
        self._invalid = 0

    @classmethod
    def install(
        cls,
        protocol: Any,
        channel: HandlerChannel,
        connection: WebSocketConnection,
        heartbeat: Beat[Any],
        limits: SessionLimits,
        *,
        bucket: TokenBucket | None = None,
        lifetime: TokenLifetime | None = None,
        inbound: Inbound | None = None,
    ) -> Feed | None:
        """Take ``protocol``'s receive events from now on; ``None`` (nothing changed)
        where the protocol is not one this can stand in for. Events already queued are
        taken first, in order."""
        if not _installable(protocol):
            return None
        feed = cls(
            protocol,
            channel,
            connection,
            heartbeat,
            limits,
            bucket=bucket,
            lifetime=lifetime,
            inbound=inbound,
        )
        feed._context = contextvars.copy_context()  # what the awaited handling runs in
        queue: asyncio.Queue[Message] = protocol.queue
        # uvicorn pauses reading after each frame it queues unless read_paused is set:
        # set for good, so frames keep coming; the feed pauses on its own when it must.
        protocol.read_paused = True
        protocol.queue = feed
        while not queue.empty():
            feed.put_nowait(queue.get_nowait())
        if feed._backlog is None:
            feed._resume()
        return feed

    # -- the queue's contract ---------------------------------------------------------------

    def put_nowait(self, message: Message) -> None:
        """Take one receive event: handled now, or behind the frames already waiting."""
        backlog = self._backlog
        if backlog is not None:
            backlog.append(message)
            return
        try:
            step = self._take(message)
        except Exception as exc:  # noqa: BLE001 - a bug here must close this connection only
            self._failed(exc)
            return
        if step is not None:
            self._start(step)

    def empty(self) -> bool:
        """Always ``True``: nothing is held here for ``get()``."""
        return True

    def qsize(self) -> int:
        """Always ``0`` (see `empty()`)."""
        return 0

    async def get(self) -> Message:
        """The next event put after `stop()`."""
        return await self._replacement().get()

    def _replacement(self) -> asyncio.Queue[Message]:
        queue = self._queue
        if queue is None:
            queue = self._queue = asyncio.Queue()
        return queue

    # -- the session's side -----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a frame's handling is being awaited (reading is paused meanwhile)."""
        return self._task is not None

    @property
    def paused(self) -> bool:
        """Whether this feed paused reading from the socket."""
        return self._paused

    @property
    def waiting(self) -> int:
        """Events read from the socket that wait behind the one being awaited."""
        backlog = self._backlog
        return len(backlog) if backlog is not None else 0

    async def stop(self) -> None:
        """Give the protocol a receive queue again, then let a frame being awaited finish (its
        handling sees the connection closing and stops there)."""
        protocol = self.protocol
        if protocol.queue is self:
            protocol.queue = self._replacement()
            if protocol.read_paused:  # uvicorn clears it itself when it resumed on close
                protocol.read_paused = self._paused
        task = self._task
        if task is not None:
            await task

    # -- frames -----------------------------------------------------------------------------

    def _take(self, message: Message) -> Coroutine[Any, Any, Any] | None:
        """Handle one event as far as it goes without waiting: ``None`` when done, else
        the coroutine that finishes it (to await in order, before the next event)."""
        connection = self.connection
        if connection.close_code is not None:  # set when the close starts
            return None
        kind = message["type"]
        if kind != "websocket.receive":
            if kind == "websocket.disconnect":
                peer_left(connection, message)
            return None
        self.heartbeat.touch()
        frame_in(message)
        tracer = self.tracer
        if tracer is not None:
            tracer.arrived()
        inbound = self.inbound
        verdict = judge(message, self.limits, self.bucket, inbound)
        if verdict is _DELIVER:
            if tracer is not None:
                tracer.inspected(message, "deliver", None)
            if self.channel.offer(message):
                return None
            return self.channel.deliver(message)
        if verdict is _PONG:
            if tracer is not None:
                tracer.settle()
            return None
        if verdict is _BUILTIN or verdict is _REFRESH:
            if (
                verdict is _BUILTIN
                and inbound is not None
                and inbound.events is not None
                and message[ENVELOPE_KEY].type not in inbound.operations
            ):
                return self._event(message, inbound)
            return self._operate(message, verdict)
        valid = answer(connection, message, verdict, self.bucket, self.limits, tracer)
        self._counted(valid)
        return None

    def _event(self, message: Message, inbound: Inbound) -> Coroutine[Any, Any, Any] | None:
        """An event handler's message: queued for it without a wait unless its queue is
        full (then the rest of the dispatch is awaited in order)."""
        coroutine = self.channel.operation(
            self.connection, message, _BUILTIN, self.lifetime, inbound
        )
        try:
            first = coroutine.send(None)
        except StopIteration as done:
            self._counted(done.value)
            return None
        if self.tracer is not None:
            self.tracer.settle()  # the span was made current here, not in the task
        return _finish(_resumed(coroutine, first))

    async def _operate(self, message: Message, verdict: Verdict) -> bool:
        """A built-in operation or ``auth.refresh`` (run in the task, span and all)."""
        operation = self.channel.operation(
            self.connection, message, verdict, self.lifetime, self.inbound
        )
        return await operation

    def _counted(self, valid: bool | None) -> None:
        """Count an invalid frame (1008 past the limit); end the frame's span."""
        connection = self.connection
        tracer = self.tracer
        if valid is False and not connection.closing:
            self._invalid += 1
            if tracer is not None:
                tracer.invalid()
            if self._invalid >= self.limits.max_invalid_frames:
                too_many_invalid(connection, self._invalid)
        if tracer is not None:
            tracer.settle()

    def _start(self, step: Coroutine[Any, Any, Any]) -> None:
        """Await ``step`` in a task; pause reading and queue what comes meanwhile."""
        self._backlog = deque()
        self._pause()
        self.channel.hold(True)
        self._task = asyncio.get_running_loop().create_task(
            self._drain(step), name=DRAIN_TASK_NAME, context=self._context
        )

    async def _drain(self, step: Coroutine[Any, Any, Any] | None) -> None:
        """Await ``step``, then take the frames queued behind it, in order, awaiting
        each one that needs it; end when none is left."""
        try:
            while step is not None:
                self._counted(await step)
                step = None
                backlog = self._backlog
                while step is None and backlog and self.connection.close_code is None:
                    step = self._take(backlog.popleft())
        except Exception as exc:  # noqa: BLE001 - as put_nowait: this connection only
            self._failed(exc)
        finally:
            self._backlog = None
            self._task = None
            self.channel.hold(False)
            self._resume()

    def _failed(self, exc: Exception) -> None:
        connection_id = self.connection.connection_id
        logger.error("reading failed on connection %s", connection_id, exc_info=exc)
        self.connection.close_soon(CloseCode.INTERNAL_ERROR, "internal error")

    def _pause(self) -> None:
        transport = self.protocol.transport
        if not self._paused and not transport.is_closing():
            self._paused = True
            transport.pause_reading()

    def _resume(self) -> None:
        transport = self.protocol.transport
        if self._paused and not transport.is_closing():
            self._paused = False
            transport.resume_reading()
