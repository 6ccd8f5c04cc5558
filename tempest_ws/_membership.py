"""The hub's membership: who may be in a topic, who is in it, who is online.

A part of :class:`~tempest_ws.hub.WebSocketHub` (its base class), kept apart because it
is one job: subscriptions and their authorization (``topic_authorizer``, see
:mod:`tempest_ws._authz`), topic presence (see :mod:`tempest_ws._presence`) and the
deployment-wide online users. Delivery stays in ``hub.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._authz import TopicAuthorizer, authorize
from ._node import Node
from ._presence import TopicPresence
from ._registry import Registry
from ._types import Topic, UserId
from .backplane.base import Backplane
from .backplane.packet import topic_channel
from .connection import WebSocketConnection
from .envelope import EnvelopeLike
from .exceptions import BackplaneError, ConfigurationError

__all__ = ["MAX_TOPIC_LENGTH", "HubMembership"]

logger = logging.getLogger("tempest_ws.hub")

MAX_TOPIC_LENGTH = 256
"""The longest topic name, in characters."""


class HubMembership:
    """Subscriptions, topic authorization, presence (a base of the hub)."""

    backplane: Backplane
    topic_authorizer: TopicAuthorizer | None
    authorizer_timeout: float
    _registry: Registry
    _connections: dict[str, WebSocketConnection]
    _users: dict[str, dict[str, WebSocketConnection]]
    _topics: dict[str, dict[str, WebSocketConnection]]
    _node: Node
    _presence: TopicPresence

    if TYPE_CHECKING:

        async def broadcast(
            self,
            envelope: EnvelopeLike,
            topic: Topic | None = None,
            *,
            exclude: str | Iterable[str] | None = None,
            exclude_users: UserId | Iterable[UserId] | None = None,
            everyone: bool = False,
        ) -> int: ...

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

    async def subscribe(self, connection_id: str, topic: Topic) -> bool:
        """Subscribe a connection to ``topic``; ``False`` if the connection is gone or the
        hub's ``topic_authorizer`` denied it (a ``topic_denied`` security event is logged
        and nothing is subscribed). Idempotent: an existing subscription returns ``True``
        without asking the authorizer again.

        The first subscriber of a topic in this process subscribes the node to the
        topic's channel (and waits for the backplane to confirm it, unless the backplane
        is down: then it is subscribed on reconnection). With presence kept for the
        topic, a user's first subscription anywhere sends ``presence.join`` to the other
        members before this returns.

        Raises:
            ValueError: ``topic`` is empty or longer than 256 characters.
        """
        if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LENGTH:
            raise ValueError(f"topic must be a non-empty string of at most {MAX_TOPIC_LENGTH}")
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        if topic in connection.topics:
            return True
        if self.topic_authorizer is not None:
            allowed = await authorize(
                self.topic_authorizer, connection, topic, timeout=self.authorizer_timeout
            )
            if not allowed or self._connections.get(connection_id) is not connection:
                return False
            if topic in connection.topics:  # a concurrent call subscribed it meanwhile
                return True
        first_here = self._registry.subscribe(connection, topic)
        announcing = None
        if self._presence.tracks(topic):
            announcing = self._presence.added(topic, connection.user_key)
        if first_here:
            await self._node.want(topic_channel(topic))
        if announcing is not None:
            # Shielded: a caller cancelled meanwhile must not cancel the announcement.
            await asyncio.shield(announcing)
        return True

    async def unsubscribe(self, connection_id: str, topic: Topic) -> bool:
        """Remove a subscription; ``False`` if it did not exist. With presence kept for
        the topic, the user's last subscription anywhere sends ``presence.leave``
        (without waiting for it)."""
        connection = self._connections.get(connection_id)
        last = None if connection is None else self._registry.unsubscribe(connection, topic)
        if last is None or connection is None:
            return False
        self._presence.removed(topic, connection.user_key)
        if last:
            self._node.unwant(topic_channel(topic))
        return True

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
            await self.broadcast(envelope, topic=topic, exclude_users=user)
        except BackplaneError as exc:
            logger.warning("%s for topic %s reached this process only: %s", kind, topic, exc)
