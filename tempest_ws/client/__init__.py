"""A reconnecting WebSocket client for tempest_ws servers, and a raw mode for any server."""

from __future__ import annotations

from tempest_ws.client._backoff import Backoff
from tempest_ws.client._client import WebSocketClient
from tempest_ws.client._disconnect import Disconnect
from tempest_ws.client._options import ClientOptions, default_is_fatal
from tempest_ws.client._raw import RawWebSocketClient
from tempest_ws.exceptions import (
    ClientGaveUpError,
    RequestError,
    RequestTimeoutError,
    SendQueueFullError,
    UnauthorizedError,
)
from tempest_ws.wire._positions import Position, StampedEnvelope

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
