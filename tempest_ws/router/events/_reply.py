"""What an event handler's caller receives, and what its dependencies may ask for.

- A returned model or dict: ``{"type": "<type>.reply", "data": ..., "request_id": ...}``
  (a dict is validated into the return annotation's model when there is one, so the
  reply has the declared shape).
- ``None``: nothing, unless the request had a ``request_id``; then an ``ack`` with
  ``data`` ``{}`` and that ``request_id``.
- A `WSEnvelope`: sent as it is, with the request's ``request_id`` when it has none
  (to keep an existing wire protocol, such as ``ack`` replies, while moving to event
  handlers).

`current_connection` and `current_user` are FastAPI dependencies that give a
dependency the connection and the resolved user of the message being handled.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel
from starlette.websockets import WebSocket

from tempest_ws._types import UserId
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.observe._audit import security_event
from tempest_ws.router.events._handlers import EventHandler
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import ACK, WSEnvelope, encode_envelope

__all__ = [
    "CONNECTION_KEY",
    "INTERNAL_ERROR",
    "answer_of",
    "current_connection",
    "current_user",
    "send_answer",
]

CONNECTION_KEY: Final = "tempest_ws.connection"
"""Scope key of the connection, set on the ``WebSocket`` the handlers share."""

INTERNAL_ERROR: Final = "internal_error"
"""Error code: the handler raised something other than ``WebSocketError`` (logged)."""


def answer_of(handler: EventHandler, request: WSEnvelope, result: Any) -> str | None:
    """The encoded answer to ``request`` for a handler that returned ``result``.

    Raises:
        ValidationError: a returned dict does not fit the declared reply model.
        UnencodableMessageError: the reply's data cannot be encoded as JSON.
    """
    if result is None:
        if request.request_id is None:
            return None
        return encode_envelope({"type": ACK, "data": {}, "request_id": request.request_id})
    if isinstance(result, WSEnvelope):
        if result.request_id is None and request.request_id is not None:
            result = result.model_copy(update={"request_id": request.request_id})
        return encode_envelope(result)
    if handler.reply_model is not None and not isinstance(result, BaseModel):
        result = handler.reply_model.model_validate(result)
    if isinstance(result, BaseModel):
        # model_dump(mode="json", by_alias=True) straight from the model's serializer:
        # the same output, without model_dump's per-call cost (a third of a small dump).
        data = result.__pydantic_serializer__.to_python(result, mode="json", by_alias=True)
    else:
        data = result
    return encode_envelope({"type": handler.reply, "data": data, "request_id": request.request_id})


def send_answer(connection: WebSocketConnection, answer: str | WSEnvelope) -> None:
    """Queue ``answer``; a connection whose queue is full is a slow consumer (1013)."""
    frame = answer if isinstance(answer, str) else encode_envelope(answer)
    if not connection.enqueue(frame) and not connection.closing:
        cid = connection.connection_id
        security_event("slow_consumer", cid, "send queue full at an event handler's answer")
        connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")


def _connection_of(websocket: WebSocket) -> WebSocketConnection:
    connection = websocket.scope.get(CONNECTION_KEY)
    if not isinstance(connection, WebSocketConnection):
        raise RuntimeError("current_connection is only available to event handlers")
    return connection


async def current_connection(websocket: WebSocket) -> WebSocketConnection:
    """FastAPI dependency: the `WebSocketConnection` whose message is being handled.

    Use it in a dependency of an event handler (a handler itself asks for the connection
    by type): ``connection: WebSocketConnection = Depends(current_connection)``. An
    ``async def``, so FastAPI calls it on the event loop, not in its thread pool.

    Raises:
        RuntimeError: used outside an event handler's dependencies.
    """
    return _connection_of(websocket)


async def current_user(websocket: WebSocket) -> UserId:
    """FastAPI dependency: the user id the bearer resolver returned for this connection.

    ``user: str = Depends(current_user)`` in an event handler or one of its dependencies.

    Raises:
        RuntimeError: used outside an event handler's dependencies.
    """
    return _connection_of(websocket).user_id
