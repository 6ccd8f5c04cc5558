"""The hub's deliveries: to everyone or a topic, to one user, to one connection; kicks.

[`Delivery`][tempest_ws.hub._delivery.Delivery] serializes an envelope once, fans the
frame out to this process's recipients ([`Registry`][tempest_ws.hub._registry.Registry])
and publishes one packet for the other nodes ([`Node`][tempest_ws.hub._node.Node]):
``broadcast`` on the ``all`` or topic channel (through the history on a topic that keeps
one), ``send_to`` and ``disconnect_user`` on the user's channel, ``send_to_connection``
on the channel of the node its connection id names. A delivery that leaves queues deep
then waits, a bounded time, for the writers (the send budget's relief). The hub's public
methods document the behaviour.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tempest_ws._types import Topic, UserId
from tempest_ws.backplane.packet import (
    ALL_CHANNEL,
    OP_ALL,
    OP_CONN,
    OP_KICK,
    OP_TOPIC,
    OP_USER,
    connection_node,
    encode_packet,
    node_channel,
    topic_channel,
    user_channel,
)
from tempest_ws.exceptions import BackplaneError
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._node import Node
from tempest_ws.hub._registry import id_set
from tempest_ws.hub.history._history import HubHistory
from tempest_ws.wire.envelope import EnvelopeLike, encode_envelope

if TYPE_CHECKING:
    from tempest_ws.observe.tracing import Tracing

__all__ = ["Delivery"]

logger = logging.getLogger("tempest_ws.hub")


class Delivery:
    """Every way one hub delivers a message (see the module docstring).

    Args:
        node: the hub's backplane side.
        history: the hub's history, if it keeps one.
        budget: the send budget shared by the hub's connections.
        tracing: carries the caller's trace context in each packet (off with ``None``).
        require_topic: refuse a broadcast to everyone without ``everyone=True``.
    """

    def __init__(
        self,
        node: Node,
        history: HubHistory | None,
        budget: SendBudget,
        tracing: Tracing | None,
        *,
        require_topic: bool,
    ) -> None:
        self.require_topic = require_topic
        self._node = node
        self._registry = node.registry
        self._node_id = node.node_id
        self._history = history
        self._budget = budget
        self._tracing = tracing

    async def broadcast(
        self,
        envelope: EnvelopeLike,
        topic: Topic | None,
        exclude: str | Iterable[str] | None,
        exclude_users: UserId | Iterable[UserId] | None,
        everyone: bool,
        ephemeral: bool,
    ) -> int:
        """``WebSocketHub.broadcast``."""
        if topic is None and self.require_topic and not everyone:
            raise ValueError("this hub requires a topic (pass everyone=True to reach all)")
        node = self._node
        if not node.running:
            await node.start()
        frame = encode_envelope(envelope)
        skip_ids = id_set(exclude)
        skip_users = id_set(
            exclude_users if not isinstance(exclude_users, UserId) else [exclude_users]
        )
        trace = None if self._tracing is None else self._tracing.inject()
        history = self._history
        budget = self._budget
        if history is not None and topic is not None and not ephemeral and history.keeps(topic):
            delivered = history.broadcast_now(topic, frame, skip_ids, skip_users)
            if delivered is None:
                delivered = await history.broadcast(topic, frame, skip_ids, skip_users, trace)
            if budget.pressure:
                await budget.relieve()
            return delivered
        op, target = (OP_ALL, "") if topic is None else (OP_TOPIC, topic)
        registry = self._registry
        delivered = registry.fan_out(registry.select(op, target, skip_ids, skip_users), frame)
        channel = ALL_CHANNEL if topic is None else topic_channel(topic)
        if node.reaches_others(channel):
            packet = encode_packet(
                self._node_id,
                op,
                target,
                frame,
                exclude=skip_ids,
                exclude_users=skip_users,
                trace=trace,
            )
            await node.publish(channel, packet)
        if budget.pressure:
            await budget.relieve()
        return delivered

    async def announce(self, kind: str, topic: str, user: str) -> None:
        """Send one presence event to ``topic``'s members but ``user`` (ephemeral)."""
        if not self._node.running:
            return  # stopping: the other nodes learn it when this node's presence expires
        envelope = {"type": kind, "data": {"topic": topic, "user_id": user}}
        try:
            await self.broadcast(envelope, topic, None, user, False, True)
        except BackplaneError as exc:
            logger.warning("%s for topic %s reached this process only: %s", kind, topic, exc)

    async def send_to(self, user: str, envelope: EnvelopeLike) -> int:
        """``WebSocketHub.send_to``."""
        node = self._node
        if not node.running:
            await node.start()
        frame = encode_envelope(envelope)
        registry = self._registry
        delivered = registry.fan_out(registry.select(OP_USER, user), frame)
        channel = user_channel(user)
        if node.reaches_others(channel):
            trace = None if self._tracing is None else self._tracing.inject()
            packet = encode_packet(self._node_id, OP_USER, user, frame, trace=trace)
            await node.publish(channel, packet)
        if self._budget.pressure:
            await self._budget.relieve()
        return delivered

    async def send_to_connection(self, connection_id: str, envelope: EnvelopeLike) -> bool:
        """``WebSocketHub.send_to_connection``."""
        connection = self._registry.connections.get(connection_id)
        if connection is not None:
            queued = self._registry.fan_out((connection,), encode_envelope(envelope)) == 1
            if self._budget.pressure:
                await self._budget.relieve()
            return queued
        node_id = connection_node(connection_id)
        if node_id is None or node_id == self._node_id:
            return False
        node = self._node
        if not node.running:
            await node.start()
        trace = None if self._tracing is None else self._tracing.inject()
        frame = encode_envelope(envelope)
        packet = encode_packet(self._node_id, OP_CONN, connection_id, frame, trace=trace)
        return await node.publish(node_channel(node_id), packet) > 0

    async def disconnect_user(self, user: str, code: int, reason: str) -> int:
        """``WebSocketHub.disconnect_user``."""
        node = self._node
        if not node.running:
            await node.start()
        connections = list(self._registry.tabs(user))
        for connection in connections:
            connection.close_soon(code, reason)
        packet = encode_packet(self._node_id, OP_KICK, user, code=int(code), reason=reason)
        await node.publish(user_channel(user), packet)
        return len(connections)
