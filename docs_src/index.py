"""docs/index.md: adding the router to an application."""

from __future__ import annotations

from fastapi import FastAPI, WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Echoes every envelope back to the connection."""
    while True:
        await connection.send(await ws.receive_json())


def create_app(settings: WebSocketSettings) -> FastAPI:
    """An app with the authenticated WebSocket at ``/ws``."""
    hub = WebSocketHub.from_settings(settings)
    resolver = jwt_bearer_resolver(settings)
    app = FastAPI()
    # --8<-- [start:include]
    app.include_router(
        make_websocket_router(handler, hub=hub, bearer_resolver=resolver, settings=settings)
    )
    # --8<-- [end:include]
    return app
