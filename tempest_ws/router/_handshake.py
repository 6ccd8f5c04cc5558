"""Steps 1–5 of a connection: screen, accept, authenticate, ``on_connect``.

1. Origin allow-list; a refused origin gets HTTP 403 before accept.
2. Per-address cap (``WS_MAX_CONNECTIONS_PER_IP``); past it, HTTP 429 before accept.
3. Token from the ``bearer`` subprotocol, then ``Authorization``, then ``?token=``.
4. Accept, echoing ``bearer`` when offered (never the token). While the router drains
   for shutdown (its `Gate` is closed), the connection is closed 1001 right here.
5. Resolve the token; ``None`` or an exception closes 4401 (after accept, so browsers
   can read the code). Then the router's ``on_connect`` hook, which may refuse with a
   close code (4403 for ``False``).

`Handshake.open()` returns once this is through, so none of its frames stays suspended
for the life of the connection. The rest of the path is the endpoint's
([`tempest_ws.router._endpoint`][tempest_ws.router._endpoint]).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from fastapi import Response
from starlette.datastructures import Headers
from starlette.websockets import WebSocket, WebSocketDisconnect

from tempest_ws._types import BearerResolver, Scope, Send, UserId
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.observe._audit import security_event
from tempest_ws.router._hooks import Hooks
from tempest_ws.router._ratelimit import AddressLimiter
from tempest_ws.router._server_guard import ServerGuard
from tempest_ws.router.auth import BEARER_SUBPROTOCOL, extract_token, origin_allowed
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.codes import CloseCode

__all__ = ["DRAIN_REASON", "Gate", "Handshake", "attempt_id", "gone", "peer_ip"]

logger = logging.getLogger("tempest_ws")

DRAIN_REASON = "server shutting down"
"""Close reason sent with 1001 by a drain."""


class Gate:
    """Whether new connections are refused (a drain started), and the reason they get."""

    __slots__ = ("closed", "reason")

    def __init__(self) -> None:
        self.closed = False
        self.reason = DRAIN_REASON

    def refuses(self) -> bool:
        """Whether a connection arriving now is closed 1001 with `reason`."""
        return self.closed


def attempt_id() -> str:
    """An id for a handshake that has no connection id yet (made where it is needed, so
    no frame that lives as long as the connection holds one)."""
    return f"handshake.{uuid.uuid4().hex}"


def gone(transport: asyncio.WriteTransport | None) -> bool:
    """Whether the peer already closed this connection (a client that gave up on a slow
    handshake): the rest of the handshake would be work for nobody."""
    return transport is not None and transport.is_closing()


def peer_ip(transport: asyncio.WriteTransport | None, scope: Scope) -> str | None:
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


class Handshake:
    """Steps 1–5 for every connection of one endpoint (see the module docstring)."""

    def __init__(
        self,
        *,
        hub: WebSocketHub,
        resolver: BearerResolver,
        settings: WebSocketSettings,
        addresses: AddressLimiter,
        gate: Gate,
        hooks: Hooks | None = None,
    ) -> None:
        self.hub = hub
        self.resolver = resolver
        self.settings = settings
        self.addresses = addresses
        self.gate = gate
        self.hooks = hooks
        self.guard = ServerGuard(hub.server_guard)

    async def screen(self, ws: WebSocket, headers: Headers, address: str) -> bool:
        """Steps 1–2, before accept: ``True`` when the connection may go on (it then holds
        a place of ``address``, which the caller releases); else it was refused.
        ``headers`` are the handshake request's (``ws.headers`` would stay cached on
        ``ws`` for the connection's life)."""
        origin = headers.get("origin")
        settings = self.settings
        if not origin_allowed(
            origin, settings.WS_ALLOWED_ORIGINS, require=settings.WS_REQUIRE_ORIGIN
        ):
            security_event(
                "origin_rejected", attempt_id(), "origin not allowed", origin=origin, client=address
            )
            await ws.close()  # before accept: the server answers HTTP 403
            return False
        if not self.addresses.acquire(address):
            security_event(
                "address_limit",
                attempt_id(),
                "too many connections from one address",
                client=address,
                limit=self.addresses.limit,
            )
            await self.deny(ws, 429)
            return False
        return True

    @staticmethod
    async def deny(ws: WebSocket, status: int, headers: dict[str, str] | None = None) -> None:
        """Refuse before accept with an HTTP status, or 403 where the server cannot."""
        try:
            await ws.send_denial_response(Response(status_code=status, headers=headers))
        except RuntimeError:  # no websocket.http.response extension
            await ws.close()
        except OSError:
            pass  # the peer left before the answer

    @staticmethod
    async def abandon(ws: WebSocket) -> None:
        """End a handshake whose client left before the answer went out.

        A server may skip the answer to a closing socket and still wait for one (uvicorn
        does, until it learns the connection is lost, and otherwise logs an error for a
        handshake the app left unanswered): a close answers it, for nobody to read."""
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await ws.close()

    async def open(
        self,
        ws: WebSocket,
        headers: Headers,
        send: Send,
        transport: asyncio.WriteTransport | None,
        address: str,
        protocol: object | None,
    ) -> tuple[WebSocketConnection, str] | None:
        """Accept, authenticate and run ``on_connect``: the connection and its token, or
        ``None`` when it was refused and closed."""
        attempt = attempt_id()
        scope = ws.scope
        found = extract_token(
            scope.get("subprotocols", []),
            headers,
            scope.get("query_string", b""),
            allow_query=self.settings.WS_ALLOW_QUERY_TOKEN,
        )
        guard, settings = self.guard, self.settings
        guard.before_accept(protocol, headers, settings.WS_MAX_MESSAGE_BYTES)
        try:
            await ws.accept(subprotocol=BEARER_SUBPROTOCOL if found.bearer_offered else None)
        except (WebSocketDisconnect, OSError):
            return None  # the peer left during the handshake
        guard.after_accept(protocol, settings.WS_MAX_FRAGMENTS_PER_MESSAGE, attempt)
        if gone(transport):  # the client gave up waiting: no token check, no registration
            await self.abandon(ws)
            return None
        if self.gate.refuses():
            await ws.close(CloseCode.GOING_AWAY, self.gate.reason)
            return None
        user_id = await self._resolve(found.token, found.source, attempt, address)
        if user_id is None:
            await ws.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return None
        if self.gate.refuses():  # the drain may have started while the resolver ran
            await ws.close(CloseCode.GOING_AWAY, self.gate.reason)
            return None
        if gone(transport):
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
            if self.gate.refuses():
                await ws.close(CloseCode.GOING_AWAY, self.gate.reason)
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
