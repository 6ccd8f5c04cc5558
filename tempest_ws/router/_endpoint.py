"""The ASGI endpoint behind the route: the path of one connection, handshake to cleanup.

1. Origin allow-list; a refused origin gets HTTP 403 before accept.
2. Per-address cap (``WS_MAX_CONNECTIONS_PER_IP``); past it, HTTP 429 before accept.
3. Token from the ``bearer`` subprotocol, then ``Authorization``, then ``?token=``.
4. Accept, echoing ``bearer`` when offered (never the token). While the router drains
   for shutdown, the connection is closed 1001 right here.
5. Resolve the token; ``None`` or an exception closes 4401 (after accept, so browsers
   can read the code). Then the router's ``on_connect`` hook, which may refuse with a
   close code (4403 for ``False``).
6. Register with the hub: the user's oldest connection past the cap is closed 4429; a
   full process closes the newcomer 1013.
7. ``hello`` frame with the heartbeat cadence; then pings, silence deadline (4408), the
   inbound guard (rate limit 4429, 1009, error envelopes, 1008), the token's expiry
   (4401 unless refreshed in band), the built-in operations and, once the ``?topics=`` of
   the URL are subscribed (with the ``subscribe`` built-in), the handler.
8. Whatever happens: unregister, stop the timers, close (1000, or 1011 after a handler
   error), cancel what is left, then run the ``on_disconnect`` hooks. Nothing leaks.

Every refusal and forced close is logged on ``tempest_ws.security`` with the connection
id (for a handshake refused before a connection exists, the id of that attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from fastapi import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from tempest_ws._bounded import STOP_TIMEOUT, cancel_tasks
from tempest_ws._types import BearerResolver, Receive, Scope, Send, UserId
from tempest_ws.exceptions import CapacityError, ConnectionClosedError
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.observe._audit import security_event, traffic_event
from tempest_ws.observe.tracing import Tracing, note_handler_error
from tempest_ws.router._expiry import TokenLifetime
from tempest_ws.router._handler_socket import HandlerWebSocket
from tempest_ws.router._heartbeat import Beat, HeartbeatWheel
from tempest_ws.router._hooks import Hooks
from tempest_ws.router._inbound import Inbound
from tempest_ws.router._ratelimit import (
    AddressLimiter,
    TokenBucket,
    client_address,
    parse_trusted_proxies,
)
from tempest_ws.router._server_guard import find_protocol
from tempest_ws.router._session import HandlerChannel, SessionLimits
from tempest_ws.router._transport import find_transport
from tempest_ws.router.auth import BEARER_SUBPROTOCOL, extract_token, origin_allowed
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import HELLO, PING_FRAME, SUBSCRIBE, encode_envelope

__all__ = ["DRAIN_REASON", "Endpoint", "Handler"]

Handler: TypeAlias = Callable[[WebSocket, WebSocketConnection, WebSocketHub], Awaitable[None]]
"""``async (ws, connection, hub) -> None``, awaited once per authenticated connection."""

logger = logging.getLogger("tempest_ws")

DRAIN_REASON = "server shutting down"
"""Close reason sent with 1001 by a drain."""


def _attempt() -> str:
    """An id for a handshake that has no connection id yet (made where it is needed, so
    no frame that lives as long as the connection holds one)."""
    return f"handshake.{uuid.uuid4().hex}"


def _peer_ip(transport: asyncio.WriteTransport | None, scope: Scope) -> str | None:
    """The TCP peer's address: from the transport (never rewritten by proxy-header
    middleware), else from the ASGI scope."""
    if transport is not None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
            return peer[0]
    client = scope.get("client")
    if client and isinstance(client[0], str):
        return str(client[0])
    return None


class Endpoint:
    """The ASGI app behind the route, called with the server's own ``receive`` and
    ``send`` once FastAPI solved the route's dependencies (see
    [`tempest_ws.router._route`][tempest_ws.router._route])."""

    def __init__(
        self,
        handler: Handler,
        *,
        hub: WebSocketHub,
        bearer_resolver: BearerResolver,
        settings: WebSocketSettings,
        max_invalid_frames: int,
        inbound: Inbound | None = None,
        hooks: Hooks | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.handler = handler
        self.tracing = tracing
        self.hub = hub
        self.inbound = inbound
        self.hooks = hooks
        self.resolver = bearer_resolver
        self.settings = settings
        self.limits = SessionLimits(
            max_message_bytes=settings.WS_MAX_MESSAGE_BYTES,
            accept_binary=settings.WS_ACCEPT_BINARY,
            max_invalid_frames=max_invalid_frames,
            heartbeat_seconds=settings.WS_HEARTBEAT_SECONDS,
            heartbeat_timeout=settings.WS_HEARTBEAT_TIMEOUT_SECONDS,
            max_json_depth=settings.WS_MAX_JSON_DEPTH,
        )
        self.addresses = AddressLimiter(settings.WS_MAX_CONNECTIONS_PER_IP)
        self.trusted = parse_trusted_proxies(settings.WS_TRUSTED_PROXIES)
        self.live: set[WebSocketConnection] = set()
        self.draining = False
        self.drain_reason = DRAIN_REASON
        self._emptied: asyncio.Event | None = None
        self._wheel: HeartbeatWheel[HandlerChannel] | None = None
        self._wheel_loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = HandlerChannel(receive, send)
        ws = HandlerWebSocket(
            scope, channel.receive, channel.send, max_json_depth=self.limits.max_json_depth
        )
        transport = find_transport(receive, send)
        address = client_address(_peer_ip(transport, scope), ws.headers, self.trusted)
        origin = ws.headers.get("origin")
        settings = self.settings
        if not origin_allowed(
            origin, settings.WS_ALLOWED_ORIGINS, require=settings.WS_REQUIRE_ORIGIN
        ):
            security_event(
                "origin_rejected", _attempt(), "origin not allowed", origin=origin, client=address
            )
            await ws.close()  # before accept: the server answers HTTP 403
            return
        if not self.addresses.acquire(address):
            security_event(
                "address_limit",
                _attempt(),
                "too many connections from one address",
                client=address,
                limit=self.addresses.limit,
            )
            await self._deny(ws, 429)
            return
        try:
            # _open returns once the handshake is through, so only this frame and _run's
            # stay suspended for the life of the connection.
            opened = await self._open(ws, send, transport, address, find_protocol(receive))
            if opened is not None:
                connection, token = opened
                await self._run(ws, channel, connection, token)
        finally:
            self.addresses.release(address)

    def _refusing(self) -> bool:
        return self.draining

    @staticmethod
    async def _deny(ws: WebSocket, status: int) -> None:
        """Refuse before accept with an HTTP status, or 403 where the server cannot."""
        try:
            await ws.send_denial_response(Response(status_code=status))
        except RuntimeError:  # no websocket.http.response extension
            await ws.close()

    async def _open(
        self,
        ws: WebSocket,
        send: Send,
        transport: asyncio.WriteTransport | None,
        address: str,
        protocol: object | None,
    ) -> tuple[WebSocketConnection, str] | None:
        """Accept, authenticate and run ``on_connect``: the connection and its token, or
        ``None`` when it was refused and closed."""
        attempt = _attempt()
        scope = ws.scope
        found = extract_token(
            scope.get("subprotocols", []),
            ws.headers,
            scope.get("query_string", b""),
            allow_query=self.settings.WS_ALLOW_QUERY_TOKEN,
        )
        guard, settings = self.hub.server_guard, self.settings
        guard.before_accept(protocol, ws.headers, settings.WS_MAX_MESSAGE_BYTES)
        try:
            await ws.accept(subprotocol=BEARER_SUBPROTOCOL if found.bearer_offered else None)
        except (WebSocketDisconnect, OSError):
            return None  # the peer left during the handshake
        guard.after_accept(protocol, settings.WS_MAX_FRAGMENTS_PER_MESSAGE, attempt)
        if self._refusing():
            await ws.close(CloseCode.GOING_AWAY, self.drain_reason)
            return None
        user_id = await self._resolve(found.token, found.source, attempt, address)
        if user_id is None:
            await ws.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return None
        if self._refusing():  # the drain may have started while the resolver ran
            await ws.close(CloseCode.GOING_AWAY, self.drain_reason)
            return None
        connection = self.hub.create_connection(user_id, send=send, transport=transport)
        logger.debug("%s is connection %s", attempt, connection.connection_id)
        if self.hooks is not None:
            refused = await self.hooks.connect(connection, ws)
            if refused is not None:
                security_event(
                    "connect_refused", connection.connection_id, "on_connect refused", code=refused
                )
                await ws.close(refused, "forbidden" if refused == CloseCode.FORBIDDEN else "")
                return None
            if self._refusing():
                await ws.close(CloseCode.GOING_AWAY, self.drain_reason)
                return None
        return connection, found.token or ""

    async def _resolve(
        self, token: str | None, source: str, attempt: str, address: str
    ) -> UserId | None:
        if token is None:
            security_event("auth_failed", attempt, "no token", level=logging.INFO, client=address)
            return None
        try:
            user_id = await self.resolver(token)
        except Exception:
            logger.exception("bearer resolver raised; refusing the connection (%s)", attempt)
            security_event("auth_failed", attempt, "resolver raised", client=address)
            return None
        if user_id is None:
            security_event(
                "auth_failed",
                attempt,
                f"token from {source} rejected by resolver",
                level=logging.INFO,
                client=address,
            )
        return user_id

    async def _run(
        self,
        ws: WebSocket,
        channel: HandlerChannel,
        connection: WebSocketConnection,
        token: str,
    ) -> None:
        hub, limits, settings = self.hub, self.limits, self.settings
        self.live.add(connection)  # from here on a drain closes it
        lifetime = TokenLifetime(
            user_key=connection.user_key,
            resolver=self.resolver,
            leeway=settings.WS_JWT_LEEWAY_SECONDS,
            on_expired=functools.partial(self._expired, connection),
            enforce=settings.WS_ENFORCE_TOKEN_EXPIRY,
            refresh_timeout=min(10.0, limits.heartbeat_timeout / 2),
        )
        heartbeat: Beat[HandlerChannel] | None = None
        handler_task: asyncio.Task[None] | None = None
        try:
            connection.enqueue(self._hello(connection))
            try:
                await hub.register(connection)
            except CapacityError:
                await connection.close(CloseCode.TRY_AGAIN_LATER, "server at capacity")
                return
            traffic_event("connection_opened")
            bucket = None
            if settings.WS_RATE_LIMIT_MESSAGES > 0:
                bucket = TokenBucket(
                    settings.WS_RATE_LIMIT_MESSAGES,
                    settings.WS_RATE_LIMIT_WINDOW_SECONDS,
                    clock=asyncio.get_running_loop().time,
                )
            channel.attach(connection)
            if self.tracing is not None:
                channel.tracer = self.tracing.session(connection.connection_id)
            connection.start()
            heartbeat = self._heartbeats().add(channel)
            lifetime.start(token)
            logger.debug(
                "connection %s open for user %s", connection.connection_id, connection.user_key
            )
            handler_task = asyncio.create_task(
                self._call_handler(ws, connection),
                name=f"tempest_ws handler {connection.connection_id}",
            )
            await channel.read_loop(
                connection,
                heartbeat,
                limits,
                bucket=bucket,
                lifetime=lifetime,
                inbound=self.inbound,
            )
            # The connection is closing: the handler's next receive reports it. Give the
            # handler the close timeout to notice, then cancel it.
            done, _ = await asyncio.wait({handler_task}, timeout=hub.close_timeout)
            if not done:
                handler_task.cancel()
        finally:
            lifetime.stop()
            if heartbeat is not None:
                heartbeat.stop()
            if handler_task is not None:
                if not handler_task.done():
                    handler_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handler_task
            if channel.tracer is not None:
                channel.tracer.close()
            hub.unregister(connection)
            try:
                try:
                    await connection.close(CloseCode.NORMAL)
                finally:
                    if self.hooks is not None:
                        await self.hooks.disconnected(connection)
            finally:
                self.live.discard(connection)
                if not self.live and self._emptied is not None:
                    self._emptied.set()
            traffic_event("connection_closed", code=connection.close_code or CloseCode.ABNORMAL)
            logger.debug(
                "connection %s closed with %s", connection.connection_id, connection.close_code
            )

    def _heartbeats(self) -> HeartbeatWheel[HandlerChannel]:
        """The heartbeat wheel of the running loop (one per endpoint and loop)."""
        loop = asyncio.get_running_loop()
        wheel = self._wheel
        if wheel is None or self._wheel_loop is not loop:
            self._wheel_loop = loop
            wheel = self._wheel = HeartbeatWheel(
                interval=self.limits.heartbeat_seconds,
                timeout=self.limits.heartbeat_timeout,
                on_ping=lambda channel: self._ping(channel.connection),
                on_timeout=lambda channel: self._timed_out(channel.connection),
                is_busy=lambda channel: channel.backlog > 0,
            )
        return wheel

    def _hello(self, connection: WebSocketConnection) -> str:
        limits = self.limits
        return encode_envelope(
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

    async def _call_handler(self, ws: WebSocket, connection: WebSocketConnection) -> None:
        try:
            if self.inbound is not None and SUBSCRIBE in self.inbound.operations:
                await self.inbound.connect_topics(connection, ws.query_params.getlist("topics"))
            await self.handler(ws, connection, self.hub)
        except WebSocketDisconnect:
            pass
        except ConnectionClosedError:
            # Sending on its own closed connection is how a push-only handler learns
            # that the client left: a normal end, unless the connection is still open.
            if not connection.closing:
                logger.exception("handler failed on connection %s", connection.connection_id)
                await connection.close(CloseCode.INTERNAL_ERROR, "internal error")
                return
        except Exception as exc:
            note_handler_error(exc)
            logger.exception("handler failed on connection %s", connection.connection_id)
            await connection.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        await connection.close(CloseCode.NORMAL)

    @staticmethod
    def _ping(connection: WebSocketConnection) -> None:
        if not connection.enqueue(PING_FRAME) and not connection.closing:
            security_event("slow_consumer", connection.connection_id, "send queue full at ping")
            connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    @staticmethod
    def _timed_out(connection: WebSocketConnection) -> None:
        security_event(
            "heartbeat_timeout",
            connection.connection_id,
            "silent past the heartbeat timeout",
            level=logging.INFO,
        )
        connection.close_soon(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")

    @staticmethod
    def _expired(connection: WebSocketConnection) -> None:
        security_event(
            "token_expired", connection.connection_id, "token expired", level=logging.INFO
        )
        connection.close_soon(CloseCode.UNAUTHORIZED, "token expired")

    async def drain(self, *, code: int, reason: str, grace: float) -> int:
        """Refuse new connections, close the live ones, wait for their sessions to end."""
        self.draining = True
        self.drain_reason = reason
        if self._emptied is None:
            self._emptied = asyncio.Event()
        emptied = self._emptied
        targets = list(self.live)
        if not targets:
            return 0
        closes = [
            asyncio.create_task(c.close(code, reason), name=f"tempest_ws drain {c.connection_id}")
            for c in targets
        ]
        try:
            async with asyncio.timeout(grace):
                await asyncio.gather(*closes, return_exceptions=True)
                if self.live:
                    await emptied.wait()
        except TimeoutError:
            stuck = list(self.live)
            logger.warning("drain deadline passed: aborting %d connection(s)", len(stuck))
            for connection in stuck:
                connection.abort()
        finally:
            await cancel_tasks(closes, "drain close", limit=STOP_TIMEOUT)
        return len(targets)
