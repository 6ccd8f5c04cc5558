"""docs/events.md, event handlers beside a classic handler, and the lifecycle decorators."""

from __future__ import annotations

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)


class Ping(BaseModel):
    n: int


def create_app(settings: WebSocketSettings, *, seen: list[str]) -> FastAPI:
    """``app.ping`` goes to its event handler, everything else to the classic loop."""
    hub = WebSocketHub.from_settings(settings)

    # --8<-- [start:both]
    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        while True:  # receives every type without an event handler
            message = await ws.receive_json()
            await connection.send({"type": "echo", "data": message["type"]})

    router = make_websocket_router(
        handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )

    @router.on("app.ping")
    async def app_ping(message: Ping) -> Ping:
        return Ping(n=message.n + 1)

    @router.on_connect
    async def hello(connection: WebSocketConnection, ws: WebSocket) -> None:
        seen.append(f"connect {connection.user_key}")

    @router.on_disconnect
    async def bye(connection: WebSocketConnection) -> None:
        seen.append(f"disconnect {connection.user_key}")

    # --8<-- [end:both]
    app = FastAPI()
    app.include_router(router)
    return app
