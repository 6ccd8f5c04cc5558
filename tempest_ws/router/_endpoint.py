"""The ASGI endpoint behind the route: the path of one connection, handshake to cleanup.

0. Past ``WS_MAX_PENDING_HANDSHAKES`` handshakes in progress (up to registration), HTTP
   503 with ``Retry-After`` before anything else
   ([`tempest_ws.router._admission`][tempest_ws.router._admission]).
1–5. Origin, per-address cap, token, accept, resolve, ``on_connect``: the handshake
   ([`tempest_ws.router._handshake`][tempest_ws.router._handshake]). A client that left
   meanwhile (it gave up waiting) is neither authenticated nor registered.
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
import logging
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.websockets import WebSocket

from tempest_ws._bounded import STOP_TIMEOUT, cancel_tasks
from tempest_ws._types import BearerResolver
from tempest_ws.exceptions import CapacityError
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.observe._audit import traffic_event
from tempest_ws.observe.tracing import Tracing
from tempest_ws.router._admission import RETRY_AFTER_SECONDS, Admission
from tempest_ws.router._closers import Expiry, ping, timed_out
from tempest_ws.router._expiry import TokenLifetime
from tempest_ws.router._feed import Feed
from tempest_ws.router._handler_socket import Handler, HandlerWebSocket
from tempest_ws.router._handler_task import HandlerWatch, handler_call, run_beside
from tempest_ws.router._handshake import DRAIN_REASON, Gate, Handshake, peer_ip
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
from tempest_ws.router._transport import find_transport, server_callables
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import HELLO, encode_envelope

__all__ = ["DRAIN_REASON", "Endpoint"]

logger = logging.getLogger("tempest_ws")

RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_SECONDS)}


class Endpoint:
    """What runs behind the route: `serve()` is the endpoint FastAPI calls once it
    solved the route's dependencies (see [`tempest_ws.router._route`][tempest_ws.router._route])."""

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
        self.admission = Admission(settings.WS_MAX_PENDING_HANDSHAKES)
        self.trusted = parse_trusted_proxies(settings.WS_TRUSTED_PROXIES)
        self.gate = Gate()
        self.handshake = Handshake(
            hub=hub,
            resolver=bearer_resolver,
            settings=settings,
            addresses=self.addresses,
            gate=self.gate,
            hooks=hooks,
        )
        self.live: set[WebSocketConnection] = set()
        self._emptied: asyncio.Event | None = None
        self._wheel: HeartbeatWheel[HandlerChannel] | None = None
        self._wheel_loop: asyncio.AbstractEventLoop | None = None
        self._time_loop: asyncio.AbstractEventLoop | None = None
        self._time: Callable[[], float] = time.monotonic

    @property
    def draining(self) -> bool:
        """True once `drain()` started: new connections are closed 1001 on accept."""
        return self.gate.closed

    async def serve(self, websocket: WebSocket) -> None:
        """The route's endpoint, called by FastAPI once the route's dependencies are
        solved: steps 1–8 of one connection.

        The whole connection runs in this one coroutine. Under uvicorn's websockets-sansio
        protocol frames are taken as they arrive (`Feed`) and the handler is awaited
        right here, through no wrapper step: an idle connection is this frame and the
        handler's, and no other task. Elsewhere the read loop is awaited here and the
        handler runs in a task beside it.
        """
        receive, send = server_callables(websocket)
        scope = websocket.scope
        channel = HandlerChannel(receive, send)
        ws = HandlerWebSocket(
            scope, channel.receive, channel.send, max_json_depth=self.limits.max_json_depth
        )
        # Read here and not kept: ws.headers would cache them (and a copy of the list)
        # for the connection's life.
        headers = Headers(raw=scope["headers"])
        transport = find_transport(receive, send)
        address = client_address(peer_ip(transport, scope), headers, self.trusted)
        admission = self.admission
        if not admission.enter():
            await self.handshake.deny(ws, 503, RETRY_AFTER)
            return
        admitted = True  # until the registration's end, which ends the admission
        try:
            if not await self.handshake.screen(ws, headers, address):
                return
            try:
                protocol = find_protocol(receive)
                opened = await self.handshake.open(ws, headers, send, transport, address, protocol)
                if opened is None:
                    return
                connection, token = opened
                del headers, opened  # nothing of the handshake stays with the connection
                self.live.add(connection)  # from here on a drain closes it
                lifetime = self._lifetime(connection)
                heartbeat: Beat[HandlerChannel] | None = None
                feed: Feed | None = None
                try:
                    try:
                        registered = await self._register(connection)
                    finally:
                        admitted = False
                        admission.leave()
                    if not registered:
                        return
                    heartbeat = self._begin(channel, connection, lifetime, token)
                    del token
                    bucket = self._bucket()
                    feed = Feed.install(
                        protocol,
                        channel,
                        connection,
                        heartbeat,
                        self.limits,
                        bucket=bucket,
                        lifetime=lifetime,
                        inbound=self.inbound,
                    )
                    if feed is not None:  # frames are taken as they arrive: one task
                        # The handler runs right here, through no wrapper coroutine.
                        watch = HandlerWatch.start(connection, self.hub.close_timeout)
                        try:
                            await handler_call(self.handler, ws, connection, self.hub, self.inbound)
                        except asyncio.CancelledError:
                            if not watch.taken_back():
                                raise
                        except BaseException as exc:
                            if watch.ended(exc):
                                raise
                        else:
                            watch.ended(None)
                    else:
                        await run_beside(
                            self.handler,
                            ws,
                            connection,
                            self.hub,
                            self.inbound,
                            channel.read_loop(
                                connection,
                                heartbeat,
                                self.limits,
                                bucket=bucket,
                                lifetime=lifetime,
                                inbound=self.inbound,
                            ),
                        )
                finally:
                    await self._stop_session(channel, lifetime, heartbeat, feed)
                    await self._end(connection)
            finally:
                self.addresses.release(address)
        finally:
            if admitted:
                admission.leave()

    def _lifetime(self, connection: WebSocketConnection) -> TokenLifetime:
        """The token's expiry and in-band refresh for ``connection`` (not started)."""
        settings = self.settings
        return TokenLifetime(
            user_key=connection.user_key,
            resolver=self.resolver,
            leeway=settings.WS_JWT_LEEWAY_SECONDS,
            on_expired=Expiry(connection),
            enforce=settings.WS_ENFORCE_TOKEN_EXPIRY,
            refresh_timeout=min(10.0, self.limits.heartbeat_timeout / 2),
        )

    def _bucket(self) -> TokenBucket | None:
        """A connection's inbound rate budget, or ``None`` without a rate limit."""
        settings = self.settings
        if settings.WS_RATE_LIMIT_MESSAGES <= 0:
            return None
        return TokenBucket(
            settings.WS_RATE_LIMIT_MESSAGES,
            settings.WS_RATE_LIMIT_WINDOW_SECONDS,
            clock=self._clock(),
        )

    async def _register(self, connection: WebSocketConnection) -> bool:
        """Step 6: queue ``hello`` and register with the hub; ``False`` (closed 1013)
        when the process is full."""
        connection.enqueue(self._hello(connection))
        try:
            await self.hub.register(connection)
        except CapacityError:
            await connection.close(CloseCode.TRY_AGAIN_LATER, "server at capacity")
            return False
        traffic_event("connection_opened")
        return True

    def _begin(
        self,
        channel: HandlerChannel,
        connection: WebSocketConnection,
        lifetime: TokenLifetime,
        token: str,
    ) -> Beat[HandlerChannel]:
        """Step 7: the channel guards the socket, the connection opens (``hello`` and
        what was queued go out), the heartbeat and the token's expiry start."""
        channel.attach(connection)
        if self.tracing is not None:
            channel.tracer = self.tracing.session(connection.connection_id)
        connection.start()
        heartbeat = self._heartbeats().add(channel)
        lifetime.start(token)
        logger.debug(
            "connection %s open for user %s", connection.connection_id, connection.user_key
        )
        return heartbeat

    @staticmethod
    async def _stop_session(
        channel: HandlerChannel,
        lifetime: TokenLifetime,
        heartbeat: Beat[HandlerChannel] | None,
        feed: Feed | None,
    ) -> None:
        """Step 8, first half: stop the timers, give the server its receive queue back."""
        lifetime.stop()
        if heartbeat is not None:
            heartbeat.stop()
        if feed is not None:
            await feed.stop()
        if channel.tracer is not None:
            channel.tracer.close()

    async def _end(self, connection: WebSocketConnection) -> None:
        """Step 8, second half: unregister, close, and forget the connection whatever the
        close and the hooks do."""
        self.hub.unregister(connection)
        try:
            await self._close(connection)
        finally:
            self.live.discard(connection)
            if not self.live and self._emptied is not None:
                self._emptied.set()
        traffic_event("connection_closed", code=connection.close_code or CloseCode.ABNORMAL)
        logger.debug(
            "connection %s closed with %s", connection.connection_id, connection.close_code
        )

    async def _close(self, connection: WebSocketConnection) -> None:
        """Close 1000 (unless a close started already), then run the ``on_disconnect``
        hooks, even if the close was interrupted."""
        try:
            await connection.close(CloseCode.NORMAL)
        finally:
            if self.hooks is not None:
                await self.hooks.disconnected(connection)

    def _clock(self) -> Callable[[], float]:
        """The running loop's ``time``, one bound method per endpoint and loop."""
        loop = asyncio.get_running_loop()
        if self._time_loop is not loop:
            self._time_loop = loop
            self._time = loop.time
        return self._time

    def _heartbeats(self) -> HeartbeatWheel[HandlerChannel]:
        """The heartbeat wheel of the running loop (one per endpoint and loop)."""
        loop = asyncio.get_running_loop()
        wheel = self._wheel
        if wheel is None or self._wheel_loop is not loop:
            self._wheel_loop = loop
            wheel = self._wheel = HeartbeatWheel(
                interval=self.limits.heartbeat_seconds,
                timeout=self.limits.heartbeat_timeout,
                on_ping=lambda channel: ping(channel.connection),
                on_timeout=lambda channel: timed_out(channel.connection),
                is_busy=lambda channel: channel.held_by_app,
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

    async def drain(self, *, code: int, reason: str, grace: float) -> int:
        """Refuse new connections, close the live ones, wait for their sessions to end."""
        self.gate.closed = True
        self.gate.reason = reason
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
