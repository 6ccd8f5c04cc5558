"""The WebSocket route: where FastAPI solves the dependencies, before the endpoint runs.

The route is a FastAPI ``APIWebSocketRoute`` (added with
``APIRouter.add_api_websocket_route``), so FastAPI's own machinery solves every
dependency that applies to it, in FastAPI's order: the app's (``FastAPI(dependencies=)``),
those of ``app.include_router(router, dependencies=)``, then the router's own
(``make_websocket_router(dependencies=)``). They run before the router's endpoint and so
before the handshake is accepted. A dependency that fails leaves the endpoint uncalled,
and FastAPI's exception handlers refuse the handshake: ``WebSocketException`` and a
request validation error close it before accept (HTTP 403), an ``HTTPException`` is
answered with its own status. This module is the one place the dependencies are solved.

The endpoint needs the server's own ASGI ``receive`` and ``send`` (not the state-tracking
methods of the ``WebSocket`` FastAPI built around them): the transport is found through
them, and the session takes over reading and writing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from fastapi import APIRouter, WebSocket
from fastapi.params import Depends

from tempest_ws._types import Receive, Send
from tempest_ws.router._endpoint import Endpoint

__all__ = ["ROUTE_NAME", "add_endpoint_route"]

ROUTE_NAME = "tempest_ws"


def _server_callables(websocket: WebSocket) -> tuple[Receive, Send]:
    """The ASGI ``receive``/``send`` the ``WebSocket`` was built on.

    Starlette keeps them as ``_receive``/``_send`` (there is no public accessor); the
    bound methods are the fallback, which still works, only without the transport.
    """
    receive = getattr(websocket, "_receive", None)
    send = getattr(websocket, "_send", None)
    if callable(receive) and callable(send):
        return cast(Receive, receive), cast(Send, send)
    return websocket.receive, websocket.send


def add_endpoint_route(
    router: APIRouter,
    path: str,
    endpoint: Endpoint,
    *,
    dependencies: Sequence[Depends] | None = None,
) -> None:
    """Add ``endpoint`` at ``path`` as a FastAPI WebSocket route of ``router``.

    ``dependencies`` are the route's own, solved after those of the app and of
    ``include_router``.
    """

    async def tempest_ws_endpoint(websocket: WebSocket) -> Any:
        receive, send = _server_callables(websocket)
        await endpoint(websocket.scope, receive, send)

    router.add_api_websocket_route(
        path, tempest_ws_endpoint, name=ROUTE_NAME, dependencies=dependencies
    )
