"""What a connection's timers run: the token's expiry (4401), the heartbeat's ping (1013
when the send queue is full) and its silence deadline (4408).

Plain functions and one small object (not closures), so an idle connection holds one
small slot for its expiry and nothing for its heartbeat.
"""

from __future__ import annotations

import logging

from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.observe._audit import security_event
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import PING_FRAME

__all__ = ["Expiry", "ping", "timed_out"]


class Expiry:
    """What a connection's token deadline runs: close it 4401 (a plain object, not a
    closure, so an idle connection holds one small slot)."""

    __slots__ = ("connection",)

    def __init__(self, connection: WebSocketConnection) -> None:
        self.connection = connection

    def __call__(self) -> None:
        connection = self.connection
        security_event(
            "token_expired", connection.connection_id, "token expired", level=logging.INFO
        )
        connection.close_soon(CloseCode.UNAUTHORIZED, "token expired")


def ping(connection: WebSocketConnection) -> None:
    """Queue a heartbeat ping; close 1013 ``slow consumer`` when the queue is full."""
    if not connection.enqueue(PING_FRAME) and not connection.closing:
        security_event("slow_consumer", connection.connection_id, "send queue full at ping")
        connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")


def timed_out(connection: WebSocketConnection) -> None:
    """Silent past the heartbeat timeout: close 4408."""
    security_event(
        "heartbeat_timeout",
        connection.connection_id,
        "silent past the heartbeat timeout",
        level=logging.INFO,
    )
    connection.close_soon(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
