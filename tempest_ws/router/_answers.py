"""How the session answers a verdict: replies, error envelopes, closes for a limit.

The read loop ([`tempest_ws.router._session`][tempest_ws.router._session]) asks
[`judge()`][tempest_ws.router._verdict.judge] what a frame is; everything here acts on
that answer, on the connection only (``enqueue``, ``close_soon``) and the security log:

- a ``ping`` gets a ``pong`` with its ``request_id``;
- an invalid frame gets an ``error`` envelope (`reject()`); too many close 1008;
- past the rate limit: 4429 ``rate_limited``; over the size limit: 1009;
- an ``auth.refresh`` is acked with the new expiry, or closes 4401 (`refresh()`);
- closes the server's WebSocket layer makes on its own (1002, 1007, 1009) are logged
  as security events (`peer_left()`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tempest_ws._types import Message
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.observe._audit import security_event
from tempest_ws.observe.tracing import note_rejection
from tempest_ws.router._expiry import AUTH_REFRESH, TokenLifetime, refresh_token_of
from tempest_ws.router._ratelimit import TokenBucket
from tempest_ws.router._verdict import Invalid, SessionLimits, Verdict, frame_size
from tempest_ws.router.realtime import ENVELOPE_KEY
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import ACK, PONG, WSEnvelope, encode_envelope, error_envelope

if TYPE_CHECKING:
    from tempest_ws.observe.tracing import SessionTracer

__all__ = ["LAYER_CLOSES", "answer", "peer_left", "refresh", "reject", "too_many_invalid"]

logger = logging.getLogger("tempest_ws.session")

LAYER_CLOSES: dict[int, str] = {
    CloseCode.PROTOCOL_ERROR: "protocol_error",
    CloseCode.INVALID_PAYLOAD: "invalid_utf8",
    CloseCode.MESSAGE_TOO_BIG: "message_too_big",
}
"""Codes the server's WebSocket layer (not tempest_ws) closes with, as security events."""


def answer(
    connection: WebSocketConnection,
    message: Message,
    verdict: Verdict | Invalid,
    bucket: TokenBucket | None,
    limits: SessionLimits,
    tracer: SessionTracer | None = None,
) -> bool:
    """Answer a verdict that needs no wait: a ping, an invalid frame, or a close for
    a limit. ``False`` for an invalid frame."""
    cid = connection.connection_id
    if isinstance(verdict, Invalid):
        reject(connection, verdict)
        if tracer is not None:
            tracer.inspected(message, "invalid", None)
        return False
    if verdict is Verdict.PING:
        envelope: WSEnvelope = message[ENVELOPE_KEY]
        reply: dict[str, object] = {"type": PONG, "data": {}, "request_id": envelope.request_id}
        connection.enqueue(encode_envelope(reply))
    elif verdict is Verdict.RATE_LIMITED:
        budget = bucket.capacity if bucket is not None else 0
        security_event("rate_limited", cid, "inbound frames over the budget", budget=budget)
        connection.close_soon(CloseCode.RATE_LIMITED, "rate_limited")
    elif verdict is Verdict.TOO_BIG:
        limit = limits.max_message_bytes
        size = frame_size(message, limit)
        security_event("message_too_big", cid, "frame over the size limit", size=size, limit=limit)
        connection.close_soon(CloseCode.MESSAGE_TOO_BIG, "message too big")
    return True


def peer_left(connection: WebSocketConnection, message: Message) -> None:
    """A ``websocket.disconnect``: the peer (or the server's WebSocket layer) closed."""
    code = int(message.get("code", CloseCode.NO_STATUS))
    layer_event = LAYER_CLOSES.get(code)
    if layer_event is not None:
        security_event(layer_event, connection.connection_id, "closed by the WebSocket layer")
    connection.peer_closed(code)


def too_many_invalid(connection: WebSocketConnection, count: int) -> None:
    security_event(
        "policy_violation", connection.connection_id, "too many invalid frames", count=count
    )
    connection.close_soon(CloseCode.POLICY_VIOLATION, "too many invalid frames")


async def refresh(
    connection: WebSocketConnection,
    envelope: WSEnvelope,
    lifetime: TokenLifetime | None,
) -> bool:
    """Answer an ``auth.refresh``: ack with the new expiry, or close 4401. ``False`` when
    it carried no token (an invalid frame)."""
    token = refresh_token_of(envelope.data)
    if token is None or lifetime is None:
        invalid = Invalid("invalid_refresh", "auth.refresh needs data.token", None, envelope)
        reject(connection, invalid)
        return False
    outcome = await lifetime.refresh(token)
    if connection.closing:
        return True
    if not outcome.ok:
        security_event("auth_refresh_rejected", connection.connection_id, outcome.reason)
        connection.close_soon(CloseCode.UNAUTHORIZED, outcome.reason)
        return True
    logger.debug("connection %s refreshed its token", connection.connection_id)
    ack: dict[str, object] = {
        "type": ACK,
        "data": {"type": AUTH_REFRESH, "expires_at": outcome.expires_at},
        "request_id": envelope.request_id,
    }
    connection.enqueue(encode_envelope(ack))
    return True


def reject(connection: WebSocketConnection, invalid: Invalid) -> None:
    """Answer an invalid frame with an ``error`` envelope (and note it for tracing)."""
    note_rejection(invalid.code, invalid.envelope)
    security_event("invalid_frame", connection.connection_id, "invalid frame", code=invalid.code)
    request_id = invalid.request_id
    if invalid.envelope is not None:
        request_id = invalid.envelope.request_id
    connection.enqueue(error_envelope(invalid.code, invalid.reason, request_id=request_id))
