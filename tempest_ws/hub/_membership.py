"""The hub's membership: who may be in a topic, who is in it, who is online.

A part of [`WebSocketHub`][tempest_ws.hub._hub.WebSocketHub] (its base class), kept apart because it
is one job: subscriptions and their authorization (``topic_authorizer``, see
[`tempest_ws.hub._authz`][tempest_ws.hub._authz]), topic presence (see
[`tempest_ws.hub._presence`][tempest_ws.hub._presence]) and the
deployment-wide online users. Delivery stays in ``hub.py``; the replay a subscription
with a position gets is [`tempest_ws.hub.history._history`][tempest_ws.hub.history._history]'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tempest_ws._types import Topic, UserId
from tempest_ws.backplane.base import Backplane
from tempest_ws.backplane.packet import topic_channel
from tempest_ws.exceptions import BackplaneError, ConfigurationError, TopicLimitError
from tempest_ws.history.base import Position
from tempest_ws.hub._authz import TopicAuthorizer, authorize, require_authorizer
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._node import Node
from tempest_ws.hub._presence import TopicPresence
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._history import HubHistory
from tempest_ws.wire.envelope import EnvelopeLike
from tempest_ws.wire.messages import TOPIC_LIMIT

__all__ = ["MAX_TOPIC_LENGTH", "HubMembership"]

logger = logging.getLogger("tempest_ws.hub")

MAX_TOPIC_LENGTH = 256
"""The longest topic name, in characters."""

CLEANUP_BATCH = 256
"""Topics a closing connection leaves per event-loop iteration (see ``_discard``)."""


class HubMembership:
    """Subscriptions, topic authorization, presence (a base of the hub)."""

    backplane: Backplane
    topic_authorizer: TopicAuthorizer | None
    authorizer_timeout: float
    max_topics_per_connection: int
    _registry: Registry
    _connections: dict[str, WebSocketConnection]
    _users: dict[str, dict[str, WebSocketConnection]]
    _topics: dict[str, dict[str, WebSocketConnection]]
    _node: Node
    _presence: TopicPresence
    _history: HubHistory | None
    _cleanups: set[asyncio.Task[None]]

    if TYPE_CHECKING:

        async def broadcast(
            self,
            envelope: EnvelopeLike,
            topic: Topic | None = None,
            *,
            exclude: str | Iterable[str] | None = None,
            exclude_users: UserId | Iterable[UserId] | None = None,
            everyone: bool = False,
            ephemeral: bool = False,
        ) -> int: ...

    def _require_authorizer(self) -> None:
        """Topics are closed by default: presence and history need an authorizer."""
        if self._presence.enabled or self._history is not None:
            kept = "presence" if self._presence.enabled else "history"
            require_authorizer(self.topic_authorizer, because=f"this hub keeps {kept}")

    async def _admits(self, connection: WebSocketConnection, topic: str) -> bool:
        """Whether the ``topic_authorizer`` admits ``connection`` to ``topic`` (``True``
        without one: a hub with neither presence nor history, fed by server code)."""
        if self.topic_authorizer is None:
            return True
        return await authorize(
            self.topic_authorizer, connection, topic, timeout=self.authorizer_timeout
        )

    async def online_users(self) -> set[str]:
        """Ids (as ``str``) of users with at least one live connection on any node.

        Raises:
            BackplaneError: the presence registry is unreachable (Redis down).
        """
        if not self._node.running:
            await self._node.start()
        return set(self._users) | await self.backplane.presence.online_users()

    async def is_online(self, user_id: UserId) -> bool:
        """Whether the user has at least one live connection on any node.

        Raises:
            BackplaneError: the user has no connection here and the presence registry is
                unreachable.
        """
        if str(user_id) in self._users:
            return True
        if not self._node.running:
            await self._node.start()
        return await self.backplane.presence.is_online(str(user_id))

    async def subscribe(
        self,
        connection_id: str,
        topic: Topic,
        *,
        position: Position | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Subscribe a connection to ``topic``; ``False`` if the connection is gone or the
        hub's ``topic_authorizer`` denied it (a ``topic_denied`` security event is logged
        and nothing is subscribed). Idempotent: an existing subscription returns ``True``
        without asking the authorizer again.

        The first subscriber of a topic in this process subscribes the node to the
        topic's channel (and waits for the backplane to confirm it, unless the backplane
        is down: then it is subscribed on reconnection). With presence kept for the
        topic, a user's first subscription anywhere sends ``presence.join`` to the other
        members before this returns.

        On a topic that keeps history (``history_policy``), the connection also gets,
        before this returns: the messages published after ``position`` (the last one
        the client got, from [`requested_position()`][tempest_ws.history.requested_position]), each
        stamped with its position, then one ``recovery`` envelope carrying
        ``request_id`` (``recovered: true`` when nothing is missing; ``false`` when the
        client must reload, always so without a ``position``), then the live messages,
        with no gap and no duplicate at the seam. That holds for a connection already
        subscribed too: it gets the replay from ``position`` again. Elsewhere
        ``position`` and ``request_id`` are ignored. See ``docs/history.md``.

        Raises:
            ValueError: ``topic`` is empty or longer than 256 characters.
            TopicLimitError: the connection is already subscribed to
                ``max_topics_per_connection`` topics (``WS_MAX_TOPICS_PER_CONNECTION``);
                nothing is subscribed, the authorizer is not asked, the connection
                stays open with its other topics.
        """
        return await self._join(connection_id, topic, position, request_id, None)

    async def _join(
        self,
        connection_id: str,
        topic: Topic,
        position: Position | None,
        request_id: str | None,
        ack: str | None,
    ) -> bool:
        """`subscribe()`; ``ack`` (a serialized frame) is queued once subscribed,
        before any replay (the built-in ``subscribe`` answers that way)."""
        if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LENGTH:
            raise ValueError(f"topic must be a non-empty string of at most {MAX_TOPIC_LENGTH}")
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        if topic not in connection.topics:
            self._check_topic_cap(connection)
            allowed = await self._admits(connection, topic)
            if not allowed or self._connections.get(connection_id) is not connection:
                return False
            self._check_topic_cap(connection)  # another subscribe ran meanwhile
        history = self._history if self._history and self._history.keeps(topic) else None
        if history is not None and topic in connection.topics:
            await history.quiesce(connection_id, topic)  # one catch-up at a time
            if self._connections.get(connection_id) is not connection:
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
        limit = self.max_topics_per_connection
        if len(connection.topics) >= limit:
            logger.warning(
                "connection %s refused a subscription: %d topics held (limit %d)",
                connection.connection_id,
                len(connection.topics),
                limit,
            )
            reason = f"at most {limit} topics per connection"
            raise TopicLimitError(reason, code=TOPIC_LIMIT, limit=limit)

    async def unsubscribe(self, connection_id: str, topic: Topic) -> bool:
        """Remove a subscription; ``False`` if it did not exist. With presence kept for
        the topic, the user's last subscription anywhere sends ``presence.leave``
        (without waiting for it)."""
        connection = self._connections.get(connection_id)
        last = None if connection is None else self._registry.unsubscribe(connection, topic)
        if last is None or connection is None:
            return False
        self._presence.removed(topic, connection.user_key)
        if self._history is not None:
            self._history.left(topic, connection_id, last=last)
        if last:
            self._node.unwant(topic_channel(topic))
        return True

    def unregister(self, connection: WebSocketConnection) -> None:
        """Remove ``connection`` and its subscriptions. Idempotent."""
        self._discard(connection)

    def _discard(self, connection: WebSocketConnection) -> None:
        """Unregister at once; leave the topics `CLEANUP_BATCH` at a time.

        The connection leaves the connection and user indexes now, so nothing targets
        it any more. Up to a batch of topics is left now too; a connection holding more
        (a raised ``WS_MAX_TOPICS_PER_CONNECTION``) leaves the rest from a task that
        yields to the event loop between batches, so no other client waits long.
        """
        idle = self._registry.remove(connection)
        if idle is None:
            return
        if self._node.running:
            self.backplane.presence.leave(connection.user_key, connection.connection_id)
        for channel in idle:
            self._node.unwant(channel)
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

    async def _finish_cleanups(self) -> None:
        """Wait for the topic cleanups still running (each is bounded; none blocks)."""
        while self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    def subscribers(self, topic: Topic) -> list[WebSocketConnection]:
        """Connections subscribed to ``topic`` in this process."""
        return list(self._topics.get(topic, {}).values())

    async def presence(self, topic: Topic) -> set[str]:
        """Ids (as ``str``) of the users with a connection subscribed to ``topic`` on
        any live node. Several tabs count once; a dead node's users drop out once its
        presence expires (``WS_REDIS_PRESENCE_TTL_SECONDS``).

        Raises:
            ConfigurationError: the hub keeps no presence for ``topic`` (``presence=``).
            BackplaneError: the presence registry is unreachable (Redis down).
        """
        if not self._presence.tracks(topic):
            raise ConfigurationError(f"this hub keeps no presence for topic {topic[:64]!r}")
        if not self._node.running:
            await self._node.start()
        remote = await self.backplane.presence.topic_members(topic)
        return self._presence.local_users(topic) | remote

    def keeps_presence(self, topic: Topic) -> bool:
        """Whether this hub keeps presence for ``topic`` (see ``presence=``)."""
        return self._presence.tracks(topic)

    async def _announce_presence(self, kind: str, topic: str, user: str) -> None:
        if not self._node.running:
            return  # stopping: the other nodes learn it when this node's presence expires
        envelope = {"type": kind, "data": {"topic": topic, "user_id": user}}
        try:
            await self.broadcast(envelope, topic=topic, exclude_users=user, ephemeral=True)
        except BackplaneError as exc:
            logger.warning("%s for topic %s reached this process only: %s", kind, topic, exc)
