"""The hub's targeted deliveries: one user, one connection, a reply, a kick.

A part of [`WebSocketHub`][tempest_ws.hub._hub.WebSocketHub] (its base class), kept apart because it
is one job: reaching named recipients on whichever node holds them. ``send_to`` and
``disconnect_user`` go to the user's channel, ``send_to_connection`` (and the replies
built on it) to the channel of the node its connection id names. Broadcasts, the
registry and the lifecycle stay in ``hub.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tempest_ws._types import UserId
from tempest_ws.backplane.packet import (
    OP_CONN,
    OP_KICK,
    OP_USER,
    connection_node,
    encode_packet,
    node_channel,
    user_channel,
)
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._node import Node
from tempest_ws.hub._registry import Registry
from tempest_ws.router.realtime import error_reply, reply_envelope
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import ACK, EnvelopeLike, encode_envelope

if TYPE_CHECKING:
    from tempest_ws.observe.tracing import Tracing

__all__ = ["TargetedSends"]


class TargetedSends:
    """Sends to one user or one connection, replies and kicks (a base of the hub)."""

    node_id: str
    tracing: Tracing | None
    send_budget: SendBudget
    _registry: Registry
    _connections: dict[str, WebSocketConnection]
    _node: Node

    if TYPE_CHECKING:

        def connections_of(self, user_id: UserId) -> list[WebSocketConnection]: ...

    async def send_to(self, user_id: UserId, envelope: EnvelopeLike) -> int:
        """Send to every connection (every tab, every node) of ``user_id``.

        Returns how many of this process's connections got it.

        Raises:
            BackplaneError: the other nodes may not get it (local delivery happened).
        """
        if not self._node.running:
            await self._node.start()
        user = str(user_id)
        frame = encode_envelope(envelope)
        delivered = self._registry.fan_out(self._registry.select(OP_USER, user), frame)
        channel = user_channel(user)
        if self._node.reaches_others(channel):
            trace = None if self.tracing is None else self.tracing.inject()
            packet = encode_packet(self.node_id, OP_USER, user, frame, trace=trace)
            await self._node.publish(channel, packet)
        if self.send_budget.pressure:
            await self.send_budget.relieve()
        return delivered

    async def send_to_connection(self, connection_id: str, envelope: EnvelopeLike) -> bool:
        """Send to one connection, on whichever node holds it.

        Returns ``False`` if it is gone or was just closed as slow (known here), or its
        node is not listening; ``True`` once queued here or handed to its node.

        Raises:
            BackplaneError: the connection lives on another node that cannot be reached.
        """
        connection = self._connections.get(connection_id)
        if connection is not None:
            queued = self._registry.fan_out((connection,), encode_envelope(envelope)) == 1
            if self.send_budget.pressure:
                await self.send_budget.relieve()
            return queued
        node = connection_node(connection_id)
        if node is None or node == self.node_id:
            return False
        if not self._node.running:
            await self._node.start()
        trace = None if self.tracing is None else self.tracing.inject()
        frame = encode_envelope(envelope)
        packet = encode_packet(self.node_id, OP_CONN, connection_id, frame, trace=trace)
        return await self._node.publish(node_channel(node), packet) > 0

    async def reply(
        self,
        connection_id: str,
        request: EnvelopeLike,
        data: Any = None,
        *,
        message_type: str = ACK,
    ) -> bool:
        """Answer ``request`` on one connection (on any node), keeping its ``request_id``:
        ``{"type": message_type, "data": data, "request_id": <the request's>}``.

        ``data`` may be a pydantic model. Queued in order with every other delivery;
        returns what `send_to_connection()` returns.

        Raises:
            BackplaneError: the connection lives on another node that cannot be reached.
        """
        return await self.send_to_connection(
            connection_id, reply_envelope(request, data, message_type=message_type)
        )

    async def reply_error(
        self, connection_id: str, request: EnvelopeLike, code: str, message: str
    ) -> bool:
        """Answer ``request`` with ``{"type": "error", "data": {"code", "message"},
        "request_id": <the request's>}`` (as the router answers a malformed frame).

        Raises:
            BackplaneError: the connection lives on another node that cannot be reached.
        """
        return await self.send_to_connection(connection_id, error_reply(request, code, message))

    async def disconnect_user(
        self, user_id: UserId, code: int = CloseCode.UNAUTHORIZED, reason: str = "revoked"
    ) -> int:
        """Close every connection of ``user_id`` on every node with ``code``.

        Returns how many were closed in this process. The default 4401 tells clients to
        fetch a new token, which a revoked user cannot.

        Raises:
            BackplaneError: the other nodes may not get the order (local ones are closed).
        """
        if not self._node.running:
            await self._node.start()
        user = str(user_id)
        connections = self.connections_of(user)
        for connection in connections:
            connection.close_soon(code, reason)
        packet = encode_packet(self.node_id, OP_KICK, user, code=int(code), reason=reason)
        await self._node.publish(user_channel(user), packet)
        return len(connections)
