"""From a decoded envelope to its handler's reply: validate, solve, call, answer.

The session asks `EventDispatch.claims()` about every decoded envelope that is not a
heartbeat, an ``auth.refresh`` or a built-in operation. A claimed envelope is
`EventDispatch.run()` in the read loop: its ``data`` is validated there (a failure is an
``invalid_data`` error envelope and counts toward the connection's invalid frames, as
with a ``messages`` registry), then it waits in the connection's
[`Lane`][tempest_ws.router.events._lane.Lane] for its turn. Without a classic handler
every type is claimed, and a type without an event handler is answered
``unknown_type`` (also an invalid frame).

Its turn comes in the connection's handler task (`EventDispatch.handle()`, the handler
the endpoint runs), which per message has FastAPI solve the handler's dependencies,
calls the handler and then answers (see [`answer_of`][tempest_ws.router.events._reply]).
When a dependency may ``yield`` (or the app overrides dependencies) the message gets
its own ``AsyncExitStack``, closed (``yield`` dependencies clean up) before the answer;
see [`Solver`][tempest_ws.router.events._solve.Solver].
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from contextlib import AsyncExitStack, suppress
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from tempest_ws.exceptions import ConnectionClosedError, UnencodableMessageError, WebSocketError
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.observe._audit import security_event
from tempest_ws.router._handler_socket import Handler
from tempest_ws.router.events._handlers import EventHandler, EventRegistry, Injected
from tempest_ws.router.events._lane import Lane
from tempest_ws.router.events._reply import (
    CONNECTION_KEY,
    INTERNAL_ERROR,
    answer_of,
    send_answer,
)
from tempest_ws.router.events._solve import overrides_of, prepare
from tempest_ws.router.realtime import error_reply
from tempest_ws.wire.envelope import WSEnvelope
from tempest_ws.wire.messages import INVALID_DATA, UNKNOWN_TYPE, describe_validation_error

__all__ = ["EventDispatch"]

logger = logging.getLogger("tempest_ws.events")

_MAX_SHOWN_TYPE: Final = 64


_Job = tuple[EventHandler, WSEnvelope, BaseModel | None]
"""One validated message waiting for its handler: handler, envelope, model."""


_Shape = tuple[dict[str, Any], str | None, str | None]
"""A handler's per-connection arguments, and its message and envelope parameters."""


class _Arguments:
    """A connection's handler arguments but the dependencies: per handler, what is the
    same for every message (connection, hub, ``WebSocket``) is gathered at its first
    message on the connection (`shape()`), and copied for each message with the
    message's own added. ``app`` is the connection's app, whose dependency overrides
    are read per message."""

    __slots__ = ("_fixed", "app", "shapes")

    def __init__(self, fixed: dict[Injected, Any], app: object) -> None:
        self._fixed = fixed
        self.app = app
        self.shapes: dict[str, _Shape] = {}

    def shape(self, handler: EventHandler) -> _Shape:
        """``handler``'s shape on this connection, made and kept on first use."""
        base: dict[str, Any] = {}
        model = envelope = None
        for name, what in handler.injected:
            if what is Injected.MESSAGE:
                model = name
            elif what is Injected.ENVELOPE:
                envelope = name
            else:
                base[name] = self._fixed[what]
        shape = self.shapes[handler.message_type] = (base, model, envelope)
        return shape


class EventDispatch:
    """The event handlers of one router, applied to its connections (module docstring).

    Args:
        registry: the handlers.
        hub: injected into handlers asking for a ``WebSocketHub``.
        classic: the router's ``handler``, run beside the event handlers; ``None``
            claims every type.
        limit: ``WS_MAX_CONCURRENT_HANDLERS``.
    """

    def __init__(
        self,
        registry: EventRegistry,
        *,
        hub: WebSocketHub,
        classic: Handler | None,
        limit: int,
    ) -> None:
        self.registry = registry
        self.hub = hub
        self.classic = classic
        self.limit = limit
        self._lanes: dict[str, Lane[_Job]] = {}

    def claims(self, envelope: WSEnvelope) -> bool:
        """Whether ``envelope`` is answered here rather than by the classic handler."""
        return self.classic is None or self.registry.get(envelope.type) is not None

    async def run(self, connection: WebSocketConnection, envelope: WSEnvelope) -> bool:
        """Validate and queue one message; ``False`` (answered with an error) if invalid."""
        handler = self.registry.get(envelope.type)
        if handler is None:
            shown = envelope.type[:_MAX_SHOWN_TYPE]
            reason = f"unknown message type {shown!r}"
            return self._refuse(connection, envelope, UNKNOWN_TYPE, reason)
        model = None
        if handler.model is not None:
            try:
                model = handler.model.model_validate(envelope.data)
            except ValidationError as exc:
                reason = describe_validation_error(exc, handler.model)
                return self._refuse(connection, envelope, INVALID_DATA, reason)
        lane = self._lanes.get(connection.connection_id) or self._lane(connection)
        job = (handler, envelope, model)
        if not lane.offer(job, concurrent=handler.concurrent):
            await lane.submit(job, concurrent=handler.concurrent)
        return True

    async def handle(self, ws: WebSocket, connection: WebSocketConnection, hub: object) -> None:
        """The endpoint's handler: serve the connection's event handlers until it closes,
        beside the classic handler when there is one."""
        ws.scope[CONNECTION_KEY] = connection
        lane = self._lane(connection)
        idle = AsyncExitStack()
        response = prepare(ws, idle)
        fixed = {Injected.CONNECTION: connection, Injected.HUB: self.hub, Injected.WEBSOCKET: ws}
        arguments = _Arguments(fixed, ws.scope.get("app"))
        serving = lane.serve(functools.partial(self._run_job, ws, response, connection, arguments))
        try:
            async with idle:
                await self._serve(serving, ws, connection)
        finally:
            self._lanes.pop(connection.connection_id, None)

    async def _serve(
        self, serving: Coroutine[Any, Any, None], ws: WebSocket, connection: WebSocketConnection
    ) -> None:
        """Await ``serving`` (the lane), beside the classic handler when there is one."""
        if self.classic is None:
            await serving
            return
        worker = asyncio.create_task(serving, name=f"tempest_ws events {connection}")
        try:
            await self.classic(ws, connection, self.hub)
        finally:
            worker.cancel()
            with suppress(asyncio.CancelledError):
                await worker

    def _lane(self, connection: WebSocketConnection) -> Lane[_Job]:
        cid = connection.connection_id
        lane = self._lanes.get(cid)
        if lane is None:
            lane = self._lanes[cid] = Lane(connection, self.limit)
            connection.add_close_callback(self._closed)
        return lane

    def _closed(self, connection: WebSocketConnection) -> None:
        lane = self._lanes.pop(connection.connection_id, None)
        if lane is not None:
            lane.wake()

    @staticmethod
    def _refuse(
        connection: WebSocketConnection, envelope: WSEnvelope, code: str, reason: str
    ) -> bool:
        security_event("invalid_frame", connection.connection_id, "invalid frame", code=code)
        send_answer(connection, error_reply(envelope, code, reason))
        return False

    async def _run_job(
        self,
        ws: WebSocket,
        response: Response,
        connection: WebSocketConnection,
        bound: _Arguments,
        job: _Job,
    ) -> None:
        """Solve, call and answer one message; never raises (but for cancellation).

        Inline rather than in helpers: this runs for every message.
        """
        handler, envelope, model = job
        answer: str | WSEnvelope | None
        try:
            base, model_name, envelope_name = bound.shapes.get(handler.message_type) or bound.shape(
                handler
            )
            arguments = base.copy()
            if model_name is not None:
                arguments[model_name] = model
            if envelope_name is not None:
                arguments[envelope_name] = envelope
            solver = handler.solver
            if solver is None:
                result = await handler.call(**arguments)
            elif solver.yields or overrides_of(bound.app) is not None:
                async with AsyncExitStack() as stack:
                    alone = not handler.concurrent
                    solved = await solver.solve_in(stack, ws, response, alone=alone)
                    result = await handler.call(**arguments, **solved)
            elif solver.leaves is not None:
                for name, call in solver.leaves:
                    arguments[name] = await call()
                result = await handler.call(**arguments)
            else:
                result = await handler.call(**arguments, **(await solver.solve(ws, response)))
            answer = answer_of(handler, envelope, result)
        except WebSocketError as exc:
            details = {} if exc.data is None else {"details": exc.data}
            answer = error_reply(envelope, str(exc.code), exc.message, **details)
        except (WebSocketDisconnect, ConnectionClosedError):
            return  # the connection closed under the handler: nobody to answer
        except Exception:
            logger.exception(
                "event handler %r failed on connection %s",
                handler.message_type,
                connection.connection_id,
            )
            answer = error_reply(envelope, INTERNAL_ERROR, "internal error")
        if answer is None:
            return
        try:
            send_answer(connection, answer)
        except UnencodableMessageError:
            logger.exception(
                "event handler %r answered with data JSON cannot encode on connection %s",
                handler.message_type,
                connection.connection_id,
            )
            send_answer(connection, error_reply(envelope, INTERNAL_ERROR, "internal error"))
