"""Realtime features: built-in operations, presence events, hooks, replies, typed receive.

Everything here is opt-in; see ``docs/realtime.md`` for the wire format of each built-in
operation. The names:

- `BUILTIN_OPERATIONS`: the envelope types ``make_websocket_router(builtins=...)``
  can answer itself (`SUBSCRIBE`, `UNSUBSCRIBE`, `PRESENCE_GET`,
  `TYPING`, `RECEIPT`); `PRESENCE_JOIN` and `PRESENCE_LEAVE` are
  the events a hub with ``presence=`` sends to a topic's members.
- `TopicAuthorizer`, `OnConnect`, `OnDisconnect`: the callables the
  hub and the router take; `allow_any_topic()` is the explicit allow-all
  authorizer (trusted or development use only: topics are closed by default).
- `reply_envelope()` builds the answer to a request (its ``request_id`` kept);
  ``hub.reply`` / ``hub.reply_error`` send it.
- `receive_envelope()` is ``ws.receive_json()`` for handlers that want the decoded
  [`WSEnvelope`][tempest_ws.wire.envelope.WSEnvelope] and, with
  ``make_websocket_router(messages=)``,
  the validated model of its ``data``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect

from tempest_ws.hub._authz import TopicAuthorizer, allow_any_topic
from tempest_ws.hub._presence import PRESENCE_JOIN, PRESENCE_LEAVE
from tempest_ws.wire._replies import error_reply, reply_envelope
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import (
    PRESENCE_GET,
    RECEIPT,
    SUBSCRIBE,
    TYPING,
    UNSUBSCRIBE,
    WSEnvelope,
    decode_envelope,
)

if TYPE_CHECKING:
    from tempest_ws.hub._connection import WebSocketConnection

__all__ = [
    "BUILTIN_OPERATIONS",
    "PRESENCE_GET",
    "PRESENCE_JOIN",
    "PRESENCE_LEAVE",
    "RECEIPT",
    "SUBSCRIBE",
    "TYPING",
    "UNSUBSCRIBE",
    "Incoming",
    "OnConnect",
    "OnDisconnect",
    "TopicAuthorizer",
    "allow_any_topic",
    "error_reply",
    "receive_envelope",
    "reply_envelope",
]

BUILTIN_OPERATIONS: Final = frozenset({SUBSCRIBE, UNSUBSCRIBE, PRESENCE_GET, TYPING, RECEIPT})
"""Every envelope type the router can answer itself (``builtins=True``)."""

ENVELOPE_KEY: Final = "tempest_ws.envelope"
MODEL_KEY: Final = "tempest_ws.message"
JSON_KEY: Final = "tempest_ws.json"
# Keys the session adds to the ASGI message it hands the handler: the decoded envelope,
# the validated model and the parsed JSON object, so neither receive_envelope() nor
# ws.receive_json() parses a frame twice.

OnConnect: TypeAlias = Callable[
    ["WebSocketConnection", WebSocket], "int | bool | Awaitable[int | bool | None] | None"
]
"""``on_connect(connection, ws)``, sync or async, before the connection is registered.

Return ``None`` or ``True`` to accept, ``False`` to close 4403 (``CloseCode.FORBIDDEN``),
or a close code (a [`CloseCode`][tempest_ws.wire.codes.CloseCode], or 3000-4999) to close with it.
``ws`` gives the handshake (headers, query, path parameters); store what later code
needs in ``connection.metadata``.
"""

OnDisconnect: TypeAlias = Callable[["WebSocketConnection"], "Awaitable[None] | None"]
"""``on_disconnect(connection)``, sync or async, after the connection closed (its
``close_code`` is set, its ``metadata`` still holds what ``on_connect`` stored)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One inbound envelope, as `receive_envelope()` returns it.

    Attributes:
        envelope: the decoded envelope (keep it to `reply()`).
        message: the validated model of its ``data`` when the router has a
            ``messages`` registry, else ``None``.
    """

    envelope: WSEnvelope
    message: BaseModel | None = None


async def receive_envelope(ws: WebSocket) -> Incoming:
    """The next envelope for the handler, decoded once (by the session).

    Raises:
        WebSocketDisconnect: the connection closed (the handler ends normally).
        EnvelopeError: a binary frame that is not an envelope (only with
            ``WS_ACCEPT_BINARY``; text frames were checked before the handler sees them).
    """
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", CloseCode.NORMAL), message.get("reason"))
    envelope = message.get(ENVELOPE_KEY)
    if not isinstance(envelope, WSEnvelope):
        envelope = decode_envelope(message.get("text") or message.get("bytes") or b"")
    model = message.get(MODEL_KEY)
    return Incoming(envelope, model if isinstance(model, BaseModel) else None)
