"""The message path: the hub, its connections, and every way to deliver to them."""

from __future__ import annotations

from tempest_ws.hub._connection import (
    WebSocketConnection,
)
from tempest_ws.hub._hub import (
    MAX_TOPIC_LENGTH,
    ClusterStats,
    HistoryStats,
    HubStats,
    WebSocketHub,
)
from tempest_ws.hub._state import ConnectionState

__all__ = [
    "MAX_TOPIC_LENGTH",
    "ClusterStats",
    "ConnectionState",
    "HistoryStats",
    "HubStats",
    "WebSocketConnection",
    "WebSocketHub",
]
