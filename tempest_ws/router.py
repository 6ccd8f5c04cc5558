"""``make_websocket_router``: the path of one connection, from handshake to cleanup.

1. Origin allow-list; a refused origin gets HTTP 403 before accept.
2. Token from the ``bearer`` subprotocol, then ``Authorization``, then ``?token=``.
3. Accept, echoing ``bearer`` when offered (never the token).
4. Resolve the token; ``None`` or an exception closes 4401 (after accept, so browsers
   can read the code).
5. Register with the hub: the user's oldest connection past the cap is closed 4429; a
   full process closes the newcomer 1013.
6. ``hello`` frame with the heartbeat cadence; then pings, silence deadline (4408), the
   inbound guard (1009, error envelopes, 1008) and the handler.
7. Whatever happens: unregister, stop the timer, close (1000, or 1011 after a handler
   error) and cancel what is left. Nothing leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._logging import install_query_token_redaction
from ._session import HandlerChannel, SessionLimits
from ._transport import find_transport
from ._types import BearerResolver, Handler, Receive, Scope, Send, UserId
from .auth import BEARER_SUBPROTOCOL, extract_token, origin_allowed
from .codes import CloseCode
from .connection import WebSocketConnection
from .envelope import HELLO, PING_FRAME, encode_envelope
from .exceptions import CapacityError
from .heartbeat import HeartbeatTimer
from .hub import WebSocketHub
from .settings import WebSocketSettings

__all__ = ["make_websocket_router"]

logger = logging.getLogger("tempest_ws")


class _Endpoint:
    """The ASGI app behind the route (an instance, so Starlette hands it raw ASGI)."""

    def __init__(
        self,
        handler: Handler,
        *,
        hub: WebSocketHub,
        bearer_resolver: BearerResolver,
        settings: WebSocketSettings,
        max_invalid_frames: int,
    ) -> None:
        self.handler = handler
        self.hub = hub
        self.resolver = bearer_resolver
        self.settings = settings
        self.limits = SessionLimits(
            max_message_bytes=settings.WS_MAX_MESSAGE_BYTES,
            accept_binary=settings.WS_ACCEPT_BINARY,
            max_invalid_frames=max_invalid_frames,
            heartbeat_seconds=settings.WS_HEARTBEAT_SECONDS,
            heartbeat_timeout=settings.WS_HEARTBEAT_TIMEOUT_SECONDS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = HandlerChannel(receive, send)
        ws = WebSocket(scope, channel.receive, channel.send)
        settings = self.settings
        origin = ws.headers.get("origin")
        if not origin_allowed(
            origin, settings.WS_ALLOWED_ORIGINS, require=settings.WS_REQUIRE_ORIGIN
        ):
            logger.warning("handshake refused: origin %r not allowed", origin)
            await ws.close()  # before accept: the server answers HTTP 403
            return
        found = extract_token(
            scope.get("subprotocols", []),
            ws.headers,
            scope.get("query_string", b""),
            allow_query=settings.WS_ALLOW_QUERY_TOKEN,
        )
        try:
            await ws.accept(subprotocol=BEARER_SUBPROTOCOL if found.bearer_offered else None)
        except (WebSocketDisconnect, OSError):
            return  # the peer left during the handshake
        user_id = await self._resolve(found.token, found.source)
        if user_id is None:
            await ws.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return
        connection = self.hub.create_connection(
            user_id, send=send, transport=find_transport(receive, send)
        )
        await self._run(ws, channel, connection)

    async def _resolve(self, token: str | None, source: str) -> UserId | None:
        if token is None:
            logger.info("connection refused: no token")
            return None
        try:
            user_id = await self.resolver(token)
        except Exception:
            logger.exception("bearer resolver raised; refusing the connection")
            return None
        if user_id is None:
            logger.info("connection refused: token from %s rejected by resolver", source)
        return user_id

    async def _run(
        self, ws: WebSocket, channel: HandlerChannel, connection: WebSocketConnection
    ) -> None:
        hub, limits = self.hub, self.limits
        connection.enqueue(
            encode_envelope(
                {
                    "type": HELLO,
                    "data": {
                        "connection_id": connection.connection_id,
                        "heartbeat_seconds": limits.heartbeat_seconds,
                        "heartbeat_timeout_seconds": limits.heartbeat_timeout,
                        "max_message_bytes": limits.max_message_bytes,
                    },
                }
            )
        )
        try:
            await hub.register(connection)
        except CapacityError:
            await connection.close(CloseCode.TRY_AGAIN_LATER, "server at capacity")
            return
        heartbeat = HeartbeatTimer(
            interval=limits.heartbeat_seconds,
            timeout=limits.heartbeat_timeout,
            on_ping=lambda: self._ping(connection),
            on_timeout=lambda: self._timed_out(connection),
            is_busy=lambda: channel.backlog > 0,
        )
        channel.attach(connection)
        connection.start()
        heartbeat.start()
        logger.debug(
            "connection %s open for user %s", connection.connection_id, connection.user_key
        )
        handler_task = asyncio.create_task(
            self._call_handler(ws, connection),
            name=f"tempest_ws handler {connection.connection_id}",
        )
        try:
            await channel.read_loop(connection, heartbeat, limits)
            # The connection is closing: the handler's next receive reports it. Give the
            # handler the close timeout to notice, then cancel it.
            done, _ = await asyncio.wait({handler_task}, timeout=hub.close_timeout)
            if not done:
                handler_task.cancel()
        finally:
            heartbeat.stop()
            if not handler_task.done():
                handler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler_task
            hub.unregister(connection)
            await connection.close(CloseCode.NORMAL)
            logger.debug(
                "connection %s closed with %s", connection.connection_id, connection.close_code
            )

    async def _call_handler(self, ws: WebSocket, connection: WebSocketConnection) -> None:
        try:
            await self.handler(ws, connection, self.hub)
        except WebSocketDisconnect:
            pass
        except Exception:
            logger.exception("handler failed on connection %s", connection.connection_id)
            await connection.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        await connection.close(CloseCode.NORMAL)

    @staticmethod
    def _ping(connection: WebSocketConnection) -> None:
        if not connection.enqueue(PING_FRAME) and not connection.closing:
            logger.warning(
                "connection %s send queue full at ping; closing", connection.connection_id
            )
            connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    @staticmethod
    def _timed_out(connection: WebSocketConnection) -> None:
        logger.info("connection %s silent past the heartbeat timeout", connection.connection_id)
        connection.close_soon(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")


def make_websocket_router(
    handler: Handler,
    *,
    hub: WebSocketHub,
    bearer_resolver: BearerResolver,
    settings: WebSocketSettings,
    path: str = "/ws",
    max_invalid_frames: int = 10,
    redact_query_tokens: bool = True,
    serve_client: bool = True,
) -> APIRouter:
    """Build an ``APIRouter`` with an authenticated, heartbeated WebSocket at ``path``.

    Args:
        handler: ``async (ws, connection, hub)`` awaited once per authenticated
            connection. ``ws.receive*`` never returns heartbeat envelopes, oversized or
            malformed frames; a ``WebSocketDisconnect`` ends it normally and any other
            exception closes 1011 (logged with the connection id).
        hub: the hub connections are registered with; started and stopped by the
            router's lifespan (and stopped connections are closed 1001).
        bearer_resolver: ``async (token) -> user id | None``.
        settings: the ``WS_*`` configuration.
        path: the route path.
        max_invalid_frames: malformed frames (each answered with an error envelope)
            tolerated per connection before it is closed 1008.
        redact_query_tokens: hide ``?token=`` values in uvicorn's logs.
        serve_client: also serve the browser client at ``{path}/client.js``.

    Returns:
        A router to pass to ``app.include_router``.
    """
    if redact_query_tokens:
        install_query_token_redaction()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await hub.start()
        try:
            yield {}
        finally:
            await hub.stop()

    router = APIRouter(lifespan=lifespan)
    endpoint = _Endpoint(
        handler,
        hub=hub,
        bearer_resolver=bearer_resolver,
        settings=settings,
        max_invalid_frames=max_invalid_frames,
    )
    router.add_websocket_route(path, endpoint, name="tempest_ws")  # type: ignore[arg-type]
    if serve_client:
        router.add_api_route(
            f"{path.rstrip('/')}/client.js",
            _client_script_response,
            methods=["GET"],
            include_in_schema=False,
            name="tempest_ws_client_js",
        )
    return router


def _client_script_response() -> Response:
    """The browser client, ``tempest-ws.js``, served from the installed package."""
    source = resources.files("tempest_ws").joinpath("static/tempest-ws.js").read_bytes()
    return Response(
        source,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )
