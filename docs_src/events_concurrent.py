"""docs/events.md, ordering and concurrency: a slow lookup that does not hold the line."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from pydantic import BaseModel

from tempest_ws import WebSocketHub, WebSocketSettings, jwt_bearer_resolver, make_websocket_router


class Lookup(BaseModel):
    key: str


def create_app(settings: WebSocketSettings, *, ready: asyncio.Event) -> FastAPI:
    """``lookup`` waits for ``ready``; ``echo`` answers at once, even meanwhile."""
    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )

    # --8<-- [start:concurrent]
    @router.on("lookup", concurrent=True)
    async def lookup(message: Lookup) -> dict[str, str]:
        await ready.wait()  # a slow backend call
        return {"key": message.key, "value": message.key.upper()}

    @router.on("echo")
    async def echo(message: Lookup) -> Lookup:
        return message

    # --8<-- [end:concurrent]
    app = FastAPI()
    app.include_router(router)
    return app
