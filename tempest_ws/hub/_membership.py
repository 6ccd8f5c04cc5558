"""The hub's membership: who is connected, who may be in a topic, who is in it, who is online.

[`Membership`][tempest_ws.hub._membership.Membership] registers connections (the caps),
unregisters them, subscribes them to topics after the
[`TopicGate`][tempest_ws.hub._authz.TopicGate] admits them, and keeps the node's channel
interest, the topic presence ([`TopicPresence`][tempest_ws.hub._presence.TopicPresence])
and the history's replays in step. The hub's public methods document the behaviour;
delivery is [`tempest_ws.hub._delivery`][tempest_ws.hub._delivery].
"""

from __future__ import annotations

import asyncio
import logging

from tempest_ws.backplane.packet import topic_channel, user_channel
from tempest_ws.exceptions import CapacityError, ConfigurationError, TopicLimitError
from tempest_ws.history.base import Position
from tempest_ws.hub._authz import TopicGate, require_authorizer
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._node import Node
from tempest_ws.hub._presence import TopicPresence
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._history import HubHistory
from tempest_ws.wire.messages import TOPIC_LIMIT

__all__ = ["CLEANUP_BATCH", "MAX_TOPIC_LENGTH", "Membership"]

logger = logging.getLogger("tempest_ws.hub")

MAX_TOPIC_LENGTH = 256
"""The longest topic name, in characters."""

CLEANUP_BATCH = 256
"""Topics a closing connection leaves per event-loop iteration (see ``discard``)."""


class Membership:
    """Registration, subscriptions, topic authorization and presence of one hub.

    Args:
        registry: the hub's local connections.
        node: the hub's backplane side (channel interest, the per-user cap, presence).
        presence: the hub's topic presence.
        history: the hub's history, if it keeps one (replays on subscribe).
        gate: the hub's topic authorizer.
        max_per_user: connections one user may hold on every node together.
        max_connections: connections in this process.
        max_topics: topics one connection may be subscribed to.
    """

    def __init__(
        self,
        registry: Registry,
        node: Node,
        presence: TopicPresence,
        history: HubHistory | None,
        gate: TopicGate,
        *,
        max_per_user: int,
        max_connections: int,
        max_topics: int,
    ) -> None:
        self.max_per_user = max_per_user
        # One bound method for every connection's close callback, not one each.
        self._on_close = self.discard
        self.max_connections = max_connections
        self.max_topics = max_topics
        self.evicted = 0
        """Connections closed 4429 over the per-user cap."""
        self.rejected = 0
        """Registrations refused at ``max_connections``."""
        self.gate = gate
        """The topic authorizer and its timeout."""
        self._registry = registry
        self._node = node
        self._presence = presence
        self._history = history
        self._cleanups: set[asyncio.Task[None]] = set()

    def check_authorizer(self) -> None:
        """Topics are closed by default: presence and history need an authorizer.

        Raises:
            ConfigurationError: presence or history is kept without an authorizer.
        """
        if self._presence.enabled or self._history is not None:
            kept = "presence" if self._presence.enabled else "history"
            require_authorizer(self.gate.authorizer, because=f"this hub keeps {kept}")

    # -- connections -------------------------------------------------------------------

    async def add(self, connection: WebSocketConnection) -> None:
        """Register ``connection`` and enforce the caps (see ``WebSocketHub.register``)."""
        self.check_authorizer()
        node = self._node
        if not node.running:
            await node.start()
        user = connection.user_key
        connections = self._registry.connections
        siblings = self._registry.tabs(user)
        overflow = max(0, len(siblings) + 1 - self.max_per_user)
        if len(connections) - overflow >= self.max_connections:
            self.rejected += 1
            logger.warning(
                "connection %s rejected: %d connections held",
                connection.connection_id,
                len(connections),
            )
            raise CapacityError()
        first_of_user = self._registry.add(connection)
        connection.add_close_callback(self._on_close)
        if first_of_user:
            await node.want(user_channel(user))
        self.evicted += await node.enforce_user_cap(connection, self.max_per_user)
        if connection.connection_id not in connections:  # it left meanwhile
            node.backplane.presence.leave(user, connection.connection_id)

    def discard(self, connection: WebSocketConnection) -> None:
        """Unregister at once; leave the topics `CLEANUP_BATCH` at a time.

        The connection leaves the connection and user indexes now, so nothing targets
        it any more. Up to a batch of topics is left now too; a connection holding more
        (a raised ``WS_MAX_TOPICS_PER_CONNECTION``) leaves the rest from a task that
        yields to the event loop between batches, so no other client waits long.
        Idempotent.
        """
        idle = self._registry.remove(connection)
        if idle is None:
            return
        node = self._node
        if node.running:
            node.backplane.presence.leave(connection.user_key, connection.connection_id)
        for channel in idle:
            node.unwant(channel)
        topics = list(connection.topics)
        self._leave_topics(connection, topics[:CLEANUP_BATCH])
        if len(topics) > CLEANUP_BATCH:
            task = asyncio.ensure_future(self._leave_later(connection, topics[CLEANUP_BATCH:]))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def _leave_later(self, connection: WebSocketConnection, topics: list[str]) -> None:
        for start in range(0, len(topics), CLEANUP_BATCH):
            await asyncio.sleep(0)
            self._leave_topics(connection, topics[start : start + CLEANUP_BATCH])

    def _leave_topics(self, connection: WebSocketConnection, topics: list[str]) -> None:
        emptied = self._registry.leave(connection, topics)
        running = self._node.running
        for topic in topics:
            self._presence.removed(topic, connection.user_key, announce=running)
            if self._history is not None:
                last = topic in emptied
                self._history.left(topic, connection.connection_id, last=last)
            if topic in emptied:
                self._node.unwant(topic_channel(topic))

    async def finish_cleanups(self) -> None:
        """Wait for the topic cleanups still running (each is bounded; none blocks)."""
        while self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    # -- topics ------------------------------------------------------------------------

    async def join(
        self,
        connection_id: str,
        topic: str,
        position: Position | None,
        request_id: str | None,
        ack: str | None,
    ) -> bool:
        """Subscribe (see ``WebSocketHub.subscribe``); ``ack`` (a serialized frame) is
        queued once subscribed, before any replay."""
        if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LENGTH:
            raise ValueError(f"topic must be a non-empty string of at most {MAX_TOPIC_LENGTH}")
        connections = self._registry.connections
        connection = connections.get(connection_id)
        if connection is None:
            return False
        if topic not in connection.topics:
            self._check_topic_cap(connection)
            allowed = await self.gate.admits(connection, topic)
            if not allowed or connections.get(connection_id) is not connection:
                return False
            self._check_topic_cap(connection)  # another subscribe ran meanwhile
        history = self._history if self._history and self._history.keeps(topic) else None
        if history is not None and topic in connection.topics:
            await history.quiesce(connection_id, topic)  # one catch-up at a time
            if connections.get(connection_id) is not connection:
                return False
        fresh = topic not in connection.topics
        first_here = fresh and self._registry.subscribe(connection, topic)
        catchup = None if history is None else history.begin(connection, topic)
        try:
            announcing = None
            if fresh and self._presence.tracks(topic):
                announcing = self._presence.added(topic, connection.user_key)
            if first_here:
                await self._node.want(topic_channel(topic))
            if announcing is not None:
                # Shielded: a caller cancelled meanwhile must not cancel the announcement.
                await asyncio.shield(announcing)
            if ack is not None:
                self._registry.fan_out((connection,), ack)
            if history is not None and catchup is not None:
                await history.catch_up(catchup, position, request_id)
        finally:
            if history is not None and catchup is not None:
                history.end(catchup)
        return True

    def _check_topic_cap(self, connection: WebSocketConnection) -> None:
        limit = self.max_topics
        if len(connection.topics) >= limit:
            logger.warning(
                "connection %s refused a subscription: %d topics held (limit %d)",
                connection.connection_id,
                len(connection.topics),
                limit,
            )
            reason = f"at most {limit} topics per connection"
            raise TopicLimitError(reason, code=TOPIC_LIMIT, limit=limit)

    def leave(self, connection_id: str, topic: str) -> bool:
        """Unsubscribe (see ``WebSocketHub.unsubscribe``); ``False`` if not subscribed."""
        connection = self._registry.connections.get(connection_id)
        last = None if connection is None else self._registry.unsubscribe(connection, topic)
        if last is None or connection is None:
            return False
        self._presence.removed(topic, connection.user_key)
        if self._history is not None:
            self._history.left(topic, connection_id, last=last)
        if last:
            self._node.unwant(topic_channel(topic))
        return True

    # -- who is where ------------------------------------------------------------------

    async def online_users(self) -> set[str]:
        """Users with a live connection on any node (see ``WebSocketHub.online_users``)."""
        node = self._node
        if not node.running:
            await node.start()
        return set(self._registry.users) | await node.backplane.presence.online_users()

    async def is_online(self, user: str) -> bool:
        """Whether ``user`` has a live connection on any node."""
        if user in self._registry.users:
            return True
        node = self._node
        if not node.running:
            await node.start()
        return await node.backplane.presence.is_online(user)

    def subscribers(self, topic: str) -> list[WebSocketConnection]:
        """Connections subscribed to ``topic`` in this process."""
        return list(self._registry.topics.get(topic, {}).values())

    @property
    def presence_enabled(self) -> bool:
        """Whether presence is kept for any topic."""
        return self._presence.enabled

    def keeps_presence(self, topic: str) -> bool:
        """Whether presence is kept for ``topic``."""
        return self._presence.tracks(topic)

    async def topic_members(self, topic: str) -> set[str]:
        """Users in ``topic`` on any live node (see ``WebSocketHub.presence``)."""
        if not self._presence.tracks(topic):
            raise ConfigurationError(f"this hub keeps no presence for topic {topic[:64]!r}")
        node = self._node
        if not node.running:
            await node.start()
        remote = await node.backplane.presence.topic_members(topic)
        return self._presence.local_users(topic) | remote
