"""A handler's signature, and the ``WebSocket`` it is given: the router's parse reused.

Starlette's ``receive_json`` parses each frame again with the standard library's
``json``, whose recursion limit is lower than what orjson accepts, so a frame the router
let through could still raise ``RecursionError`` in the handler. Here ``receive_json``
returns the object the session already parsed (and checked against
``WS_MAX_JSON_DEPTH``) for the frame: it cannot fail on a text frame the router passed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from tempest_ws._types import Receive, Scope, Send
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.router.realtime import JSON_KEY
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import parse_json

__all__ = ["Handler", "HandlerWebSocket"]

Handler: TypeAlias = Callable[[WebSocket, WebSocketConnection, WebSocketHub], Awaitable[None]]
"""``async (ws, connection, hub) -> None``, awaited once per authenticated connection."""


class HandlerWebSocket(WebSocket):
    """A Starlette ``WebSocket`` whose ``receive_json`` reuses the router's parse."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, max_json_depth: int) -> None:
        super().__init__(scope, receive, send)
        self.max_json_depth = max_json_depth

    async def receive_json(self, mode: str = "text") -> Any:
        """The next frame's JSON value, as parsed by the router.

        ``mode`` is accepted for compatibility with Starlette and changes nothing for
        text frames. A binary frame (only with ``WS_ACCEPT_BINARY``) is parsed here with
        the same depth limit.

        Raises:
            WebSocketDisconnect: the connection closed.
            EnvelopeError: a binary frame that is not JSON (``invalid_json``) or nests
                deeper than ``WS_MAX_JSON_DEPTH`` (``json_too_deep``).
        """
        if mode not in {"text", "binary"}:
            raise RuntimeError('The "mode" argument should be "text" or "binary".')
        if self.application_state != WebSocketState.CONNECTED:
            raise RuntimeError('WebSocket is not connected. Need to call "accept" first.')
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CloseCode.NORMAL), message.get("reason"))
        if JSON_KEY in message:
            return message[JSON_KEY]
        frame = message.get("bytes")
        if frame is None:
            frame = message.get("text") or ""
        return parse_json(frame, max_depth=self.max_json_depth)
