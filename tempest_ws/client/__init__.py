"""A reconnecting WebSocket client for tempest_ws servers, and a raw mode for any server."""

from __future__ import annotations

from tempest_ws.client._client import (
    Backoff,
    ClientGaveUpError,
    ClientOptions,
    Disconnect,
    Position,
    RawWebSocketClient,
    RequestError,
    RequestTimeoutError,
    SendQueueFullError,
    StampedEnvelope,
    UnauthorizedError,
    WebSocketClient,
    default_is_fatal,
)

__all__ = [
    "Backoff",
    "ClientGaveUpError",
    "ClientOptions",
    "Disconnect",
    "Position",
    "RawWebSocketClient",
    "RequestError",
    "RequestTimeoutError",
    "SendQueueFullError",
    "StampedEnvelope",
    "UnauthorizedError",
    "WebSocketClient",
    "default_is_fatal",
]
