"""The connection path: the route, its endpoint, and everything before the handler runs."""

from __future__ import annotations

from tempest_ws.router._router import (
    DRAIN_REASON,
    WebSocketRouter,
    make_websocket_router,
)

__all__ = [
    "DRAIN_REASON",
    "WebSocketRouter",
    "make_websocket_router",
]
