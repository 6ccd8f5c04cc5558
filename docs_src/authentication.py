"""docs/authentication.md: token carriers, resolvers and FastAPI dependencies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, WebSocket

from tempest_ws import (
    BearerResolver,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)


async def hello_with_authorization_header(url: str, token: str) -> dict[str, Any]:
    """Connect with ``Authorization: Bearer``; return the server's ``hello``."""
    # --8<-- [start:header]
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        hello = json.loads(await ws.recv())
    # --8<-- [end:header]
    return dict(hello)


def resolver_from_environment() -> BearerResolver:
    """The resolver an application builds from its ``WS_*`` environment."""
    # --8<-- [start:settings]
    settings = WebSocketSettings()
    resolver = jwt_bearer_resolver(settings)
    # --8<-- [end:settings]
    return resolver


def rs256_resolver(settings: WebSocketSettings) -> BearerResolver:
    """An RS256 resolver with the public key read from ``jwt-public.pem``."""
    # --8<-- [start:rsa]
    resolver = jwt_bearer_resolver(
        settings,
        algorithms=["RS256"],
        public_key=Path("jwt-public.pem").read_text(),
        audience="websocket",
        issuer="https://auth.example.com",
    )
    # --8<-- [end:rsa]
    return resolver


def app_with_dependencies(
    settings: WebSocketSettings, calls: list[str]
) -> tuple[FastAPI, WebSocketHub]:
    """The four levels of FastAPI dependencies around the WebSocket route.

    Each dependency appends its name to ``calls``, so a test sees which ran, in what
    order, before the handshake was accepted.
    """

    def recorder(name: str) -> Any:
        def dependency(websocket: WebSocket) -> None:
            calls.append(name)

        return dependency

    audit, check_plan = recorder("audit"), recorder("check_plan")
    check_tenant, check_region = recorder("check_tenant"), recorder("check_region")
    hub = WebSocketHub.from_settings(settings)
    resolver = jwt_bearer_resolver(settings)

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        await ws.receive_json()

    # --8<-- [start:dependencies]
    app = FastAPI(dependencies=[Depends(audit)])                     # 1. the app's
    api = APIRouter(dependencies=[Depends(check_plan)])              # 2. an enclosing router's
    router = make_websocket_router(
        handler, hub=hub, bearer_resolver=resolver, settings=settings,
        dependencies=[Depends(check_region)],                         # 4. the WebSocket route's own
    )
    api.include_router(router, dependencies=[Depends(check_tenant)])  # 3. include_router's
    app.include_router(api)
    # --8<-- [end:dependencies]
    return app, hub
