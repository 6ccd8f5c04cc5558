"""docs/lifecycle.md: the handler's signature."""

from __future__ import annotations

from fastapi import WebSocket

from tempest_ws import WebSocketConnection, WebSocketHub


# --8<-- [start:handler]
async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None: ...
# --8<-- [end:handler]
