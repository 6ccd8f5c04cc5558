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

The endpoint (`Endpoint.serve`) takes the server's own ASGI ``receive`` and ``send``
from the ``WebSocket`` FastAPI built (not its state-tracking methods): the transport is
found through them, and the session takes over reading and writing. FastAPI's frames
around the endpoint, with their exit stacks, stay open until the connection ends, so a
``yield`` dependency's cleanup runs then.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from fastapi.params import Depends

from tempest_ws.router._endpoint import Endpoint

__all__ = ["ROUTE_NAME", "add_endpoint_route"]

ROUTE_NAME = "tempest_ws"


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

    # The bound method itself, not a wrapper around it: one coroutine frame fewer stays
    # suspended for the life of every connection.
    router.add_api_websocket_route(path, endpoint.serve, name=ROUTE_NAME, dependencies=dependencies)
