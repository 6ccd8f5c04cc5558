"""The handler's task: the application's handler runs beside the read loop, and its end
closes the connection (1000 when it returns or the client left, 1011 after an error).

Thousands of connections sit idle in their handlers at once, so the task runs the
handler's own coroutine, with no wrapper coroutine of the router around it: how the
handler ended is read by the task's done callback (`HandlerEnd`, a small object, not a
closure). Only a connection that has ``?topics=`` to subscribe first (with the
``subscribe`` built-in) runs through `call_handler()`, which subscribes them, then
awaits the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from tempest_ws.exceptions import ConnectionClosedError
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.observe.tracing import note_handler_error
from tempest_ws.router._handler_socket import Handler
from tempest_ws.router._inbound import Inbound
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import SUBSCRIBE

__all__ = [
    "HANDLER_TASK_NAME",
    "HandlerEnd",
    "HandlerWatch",
    "call_handler",
    "handler_call",
    "run_beside",
    "start_handler",
]

logger = logging.getLogger("tempest_ws")

HANDLER_TASK_NAME = "tempest_ws handler"
"""The name of every handler task (one shared string: nothing made per connection)."""


class HandlerEnd:
    """The done callback of a handler task: close the connection as the handler ended.

    Returned, or ended by `WebSocketDisconnect`: close 1000. Raised anything else: log
    it on ``tempest_ws`` and close 1011, except `ConnectionClosedError` once the
    connection is closing (a push-only handler learns that way that the client left: a
    normal end). Cancelled: nothing (the router cancelled it, closing already).
    A close that already started is not changed.
    """

    __slots__ = ("connection",)

    def __init__(self, connection: WebSocketConnection) -> None:
        self.connection = connection

    def __call__(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        self.ended(task.exception())

    def ended(self, exc: BaseException | None) -> None:
        """The handler returned (``exc`` ``None``) or raised ``exc``: close accordingly."""
        connection = self.connection
        if exc is None or isinstance(exc, WebSocketDisconnect):
            connection.close_soon(CloseCode.NORMAL)
            return
        if not isinstance(exc, Exception):
            return  # KeyboardInterrupt, SystemExit: asyncio raises them on its own
        if isinstance(exc, ConnectionClosedError):
            if connection.closing:
                return
        else:
            note_handler_error(exc)
        logger.error("handler failed on connection %s", connection.connection_id, exc_info=exc)
        connection.close_soon(CloseCode.INTERNAL_ERROR, "internal error")


class HandlerWatch:
    """Bounds a handler the endpoint awaits in its own task: once the connection's close
    starts, the handler has the close timeout to end (its next receive or send reports
    the close); past it, the task is cancelled, and `taken_back()` tells the endpoint
    that cancel was this watch's, so its cleanup still runs. `ended()` closes the
    connection as `HandlerEnd` does.

    The connection's close callback (a plain object: one small slot per connection).
    """

    __slots__ = ("cancelled", "connection", "running", "task", "timeout", "timer")

    def __init__(
        self, connection: WebSocketConnection, task: asyncio.Task[Any], timeout: float
    ) -> None:
        self.connection = connection
        self.task = task
        self.timeout = timeout
        self.running = True
        self.cancelled = False
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def start(cls, connection: WebSocketConnection, timeout: float) -> HandlerWatch:
        """Watch the handler the current task is about to await."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a handler is watched from inside a task")
        watch = cls(connection, task, timeout)
        if connection.closing:
            watch(connection)
        else:
            connection.add_close_callback(watch)
        return watch

    def __call__(self, _connection: WebSocketConnection) -> None:
        if self.running and self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.timeout, self.overdue)

    def overdue(self) -> None:
        """The close timeout passed: cancel the handler if it still runs."""
        self.timer = None
        if self.running:
            self.cancelled = True
            self.task.cancel()

    def taken_back(self) -> bool:
        """The handler ended with ``CancelledError``: ``True`` if that was this watch's
        cancel alone (taken back: the endpoint carries on with its cleanup)."""
        self._done()
        return self.cancelled and self.task.uncancel() == 0

    def ended(self, exc: BaseException | None) -> bool:
        """The handler returned (``exc`` ``None``) or raised ``exc``: close as
        `HandlerEnd` does. ``True`` when ``exc`` must propagate (``KeyboardInterrupt``,
        ``SystemExit``)."""
        self._done()
        if self.cancelled:
            self.task.uncancel()  # the handler swallowed the cancel
        HandlerEnd(self.connection).ended(exc)
        return exc is not None and not isinstance(exc, Exception)

    def _done(self) -> None:
        self.running = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _connects_topics(ws: WebSocket, inbound: Inbound | None) -> bool:
    """Whether ``?topics=`` may name topics to subscribe before the handler runs."""
    if inbound is None or SUBSCRIBE not in inbound.operations:
        return False
    return b"topics" in ws.scope.get("query_string", b"")


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


async def _raised(exc: Exception) -> None:
    raise exc


async def call_handler(
    handler: Handler,
    ws: WebSocket,
    connection: WebSocketConnection,
    hub: WebSocketHub,
    inbound: Inbound | None,
) -> None:
    """Subscribe the topics of ``?topics=`` (when the router has the ``subscribe``
    built-in), then await the handler."""
    if inbound is not None and SUBSCRIBE in inbound.operations:
        # Parsed here and not kept: ws.query_params would cache them on the socket.
        topics = QueryParams(ws.scope.get("query_string", b"")).getlist("topics")
        await inbound.connect_topics(connection, topics)
    await handler(ws, connection, hub)


def start_handler(
    handler: Handler,
    ws: WebSocket,
    connection: WebSocketConnection,
    hub: WebSocketHub,
    inbound: Inbound | None,
) -> asyncio.Task[None]:
    """The task running ``handler`` for ``connection``, with `HandlerEnd` on its end."""
    coroutine: Coroutine[Any, Any, None] | None = None
    if not _connects_topics(ws, inbound):
        try:
            awaitable = handler(ws, connection, hub)
        except Exception as exc:  # noqa: BLE001 - the application's: ends the task as any error
            coroutine = _raised(exc)
        else:
            coroutine = awaitable if asyncio.iscoroutine(awaitable) else _awaited(awaitable)
    if coroutine is None:
        coroutine = call_handler(handler, ws, connection, hub, inbound)
    # One copy of the context for the task and its done callback (each would make its own).
    context = contextvars.copy_context()
    task = asyncio.get_running_loop().create_task(
        coroutine, name=HANDLER_TASK_NAME, context=context
    )
    task.add_done_callback(HandlerEnd(connection), context=context)
    return task


def handler_call(
    handler: Handler,
    ws: WebSocket,
    connection: WebSocketConnection,
    hub: WebSocketHub,
    inbound: Inbound | None,
) -> Awaitable[None]:
    """What the endpoint awaits to run ``handler``: the handler itself, or
    `call_handler()` when ``?topics=`` are to be subscribed first. (Raises what the
    handler raises when called: await it inside the same ``try``.)"""
    if _connects_topics(ws, inbound):
        return call_handler(handler, ws, connection, hub, inbound)
    return handler(ws, connection, hub)


async def run_beside(
    handler: Handler,
    ws: WebSocket,
    connection: WebSocketConnection,
    hub: WebSocketHub,
    inbound: Inbound | None,
    reading: Coroutine[Any, Any, None],
) -> None:
    """Where the server's receive events cannot be taken as they come: ``handler`` in
    its own task, ``reading`` (the read loop) awaited here. Once reading ends (the
    connection is closing), the handler has the hub's close timeout to notice, then it
    is cancelled; it is cancelled and awaited whatever happens."""
    task = start_handler(handler, ws, connection, hub, inbound)
    try:
        await reading
        done, _ = await asyncio.wait({task}, timeout=hub.close_timeout)
        if not done:
            task.cancel()
    finally:
        reading.close()  # nothing if it ran; never left un-awaited
        if not task.done():
            task.cancel()
            # How it ended is the task's done callback's business (logged there).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
