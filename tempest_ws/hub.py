"""``WebSocketHub``: the registry of live connections and every way to deliver to them.

The hub is callable from any coroutine in the process (HTTP handlers included). Each
delivery serializes the envelope once and appends the same string to every recipient's
bounded queue; it never awaits a socket and holds no lock, so one slow or dead client
cannot delay anyone else. A recipient whose queue is full is closed 1013 on the spot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

from ._types import Send, Topic, UserId
from .codes import CloseCode
from .connection import WebSocketConnection
from .envelope import EnvelopeLike, encode_envelope
from .exceptions import CapacityError, ConfigurationError
from .settings import WebSocketSettings

__all__ = ["HubStats", "WebSocketHub"]

logger = logging.getLogger("tempest_ws.hub")

MAX_TOPIC_LENGTH = 256


@dataclass(frozen=True, slots=True)
class HubStats:
    """A snapshot of the hub's registry and counters (this process only)."""

    connections: int
    users: int
    topics: int
    subscriptions: int
    frames_queued: int
    slow_consumers_closed: int
    evicted_over_user_cap: int
    rejected_at_capacity: int


def _ids(values: str | Iterable[Any] | None) -> frozenset[str]:
    if values is None:
        return frozenset()
    if isinstance(values, str):
        return frozenset((values,))
    return frozenset(str(v) for v in values)


class WebSocketHub:
    """Registry of connections by id, user and topic, with broadcast and targeted sends.

    Args:
        max_per_user: connections one user may hold; registering one more closes that
            user's oldest connection with 4429.
        max_connections: connections in this process; past it ``register`` raises
            :class:`CapacityError` and the router closes the newcomer 1013.
        send_queue_size: frames queued per connection before it is a slow consumer.
        close_timeout: seconds a close may take before the transport is aborted.

    Deliveries accept a :class:`~tempest_ws.envelope.WSEnvelope` or a plain mapping and
    return how many connections the frame was queued for. They never raise for a closed
    or slow recipient: it is closed and unregistered, and the others still get the frame.
    """

    def __init__(
        self,
        *,
        max_per_user: int = 5,
        max_connections: int = 10_000,
        send_queue_size: int = 1024,
        close_timeout: float = 2.0,
    ) -> None:
        if max_per_user < 1 or max_connections < 1 or send_queue_size < 1:
            raise ConfigurationError("hub limits must be at least 1")
        if close_timeout <= 0:
            raise ConfigurationError("close_timeout must be positive")
        self.max_per_user = max_per_user
        self.max_connections = max_connections
        self.send_queue_size = send_queue_size
        self.close_timeout = close_timeout
        self._connections: dict[str, WebSocketConnection] = {}
        self._users: dict[str, dict[str, WebSocketConnection]] = {}
        self._topics: dict[str, dict[str, WebSocketConnection]] = {}
        self._frames_queued = 0
        self._slow_closed = 0
        self._evicted = 0
        self._rejected = 0

    @classmethod
    def from_settings(cls, settings: WebSocketSettings) -> Self:
        """Build the hub the settings describe (caps, queue size, close timeout)."""
        return cls(
            max_per_user=settings.WS_MAX_CONNECTIONS_PER_USER,
            max_connections=settings.WS_MAX_CONNECTIONS,
            send_queue_size=settings.WS_SEND_QUEUE_SIZE,
            close_timeout=settings.WS_CLOSE_TIMEOUT_SECONDS,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare the hub for use; the router's lifespan calls it. Idempotent."""

    async def stop(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutdown") -> None:
        """Close every connection with ``code`` (concurrently) and empty the registry."""
        connections = list(self._connections.values())
        await asyncio.gather(*(c.close(code, reason) for c in connections), return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- registry ----------------------------------------------------------------------

    def create_connection(
        self,
        user_id: UserId,
        *,
        send: Send,
        transport: asyncio.WriteTransport | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebSocketConnection:
        """Build a connection with this hub's queue size and close timeout (not registered)."""
        return WebSocketConnection(
            user_id,
            send=send,
            queue_size=self.send_queue_size,
            close_timeout=self.close_timeout,
            transport=transport,
            metadata=metadata,
        )

    async def register(self, connection: WebSocketConnection) -> None:
        """Add ``connection``; evict the user's oldest connections (4429) past the cap.

        Raises:
            CapacityError: the process already holds ``max_connections`` (after counting
                the evictions this registration would make). Nothing is evicted then.
        """
        siblings = self._users.get(connection.user_key, {})
        overflow = max(0, len(siblings) + 1 - self.max_per_user)
        if len(self._connections) - overflow >= self.max_connections:
            self._rejected += 1
            logger.warning(
                "connection %s rejected: %d connections held",
                connection.connection_id,
                len(self._connections),
            )
            raise CapacityError()
        for oldest in list(siblings.values())[:overflow]:
            self._evicted += 1
            logger.info(
                "connection %s evicted: user over %d connections",
                oldest.connection_id,
                self.max_per_user,
            )
            oldest.close_soon(CloseCode.TOO_MANY_CONNECTIONS, "too many connections for user")
        self._connections[connection.connection_id] = connection
        self._users.setdefault(connection.user_key, {})[connection.connection_id] = connection
        connection.add_close_callback(self._discard)

    def unregister(self, connection: WebSocketConnection) -> None:
        """Remove ``connection`` and its subscriptions. Idempotent."""
        self._discard(connection)

    def _discard(self, connection: WebSocketConnection) -> None:
        cid = connection.connection_id
        if self._connections.pop(cid, None) is None:
            return
        user = self._users.get(connection.user_key)
        if user is not None:
            user.pop(cid, None)
            if not user:
                del self._users[connection.user_key]
        for topic in connection.topics:
            members = self._topics.get(topic)
            if members is not None:
                members.pop(cid, None)
                if not members:
                    del self._topics[topic]

    def get(self, connection_id: str) -> WebSocketConnection | None:
        """The live connection with this id in this process, or ``None``."""
        return self._connections.get(connection_id)

    def connections_of(self, user_id: UserId) -> list[WebSocketConnection]:
        """The user's live connections in this process, oldest first."""
        return list(self._users.get(str(user_id), {}).values())

    async def online_users(self) -> set[str]:
        """Ids (as ``str``) of users with at least one live connection."""
        return set(self._users)

    async def is_online(self, user_id: UserId) -> bool:
        """Whether the user has at least one live connection."""
        return str(user_id) in self._users

    def stats(self) -> HubStats:
        """Counts of connections, users, topics and the delivery counters."""
        return HubStats(
            connections=len(self._connections),
            users=len(self._users),
            topics=len(self._topics),
            subscriptions=sum(len(m) for m in self._topics.values()),
            frames_queued=self._frames_queued,
            slow_consumers_closed=self._slow_closed,
            evicted_over_user_cap=self._evicted,
            rejected_at_capacity=self._rejected,
        )

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(self, connection_id: str, topic: Topic) -> bool:
        """Subscribe a connection to ``topic``; ``False`` if the connection is gone.

        Raises:
            ValueError: ``topic`` is empty or longer than 256 characters.
        """
        if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LENGTH:
            raise ValueError(f"topic must be a non-empty string of at most {MAX_TOPIC_LENGTH}")
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        connection.topics.add(topic)
        self._topics.setdefault(topic, {})[connection_id] = connection
        return True

    async def unsubscribe(self, connection_id: str, topic: Topic) -> bool:
        """Remove a subscription; ``False`` if it did not exist."""
        connection = self._connections.get(connection_id)
        members = self._topics.get(topic)
        if connection is None or members is None or connection_id not in members:
            return False
        connection.topics.discard(topic)
        del members[connection_id]
        if not members:
            del self._topics[topic]
        return True

    def subscribers(self, topic: Topic) -> list[WebSocketConnection]:
        """Connections subscribed to ``topic`` in this process."""
        return list(self._topics.get(topic, {}).values())

    # -- delivery ----------------------------------------------------------------------

    async def broadcast(
        self,
        envelope: EnvelopeLike,
        topic: Topic | None = None,
        *,
        exclude: str | Iterable[str] | None = None,
        exclude_users: UserId | Iterable[UserId] | None = None,
    ) -> int:
        """Send to everyone, or to ``topic``'s subscribers, minus the exclusions.

        ``exclude`` takes connection ids, ``exclude_users`` user ids (a single id or an
        iterable of them). Returns the number of connections the frame was queued for.
        """
        frame = encode_envelope(envelope)
        pool = self._connections if topic is None else self._topics.get(topic, {})
        skip_ids = _ids(exclude)
        skip_users = _ids(
            exclude_users if not isinstance(exclude_users, UserId) else [exclude_users]
        )
        if not skip_ids and not skip_users:
            return self._fan_out(pool.values(), frame)
        return self._fan_out(
            (
                c
                for c in pool.values()
                if c.connection_id not in skip_ids and c.user_key not in skip_users
            ),
            frame,
        )

    async def send_to(self, user_id: UserId, envelope: EnvelopeLike) -> int:
        """Send to every connection (every tab) of ``user_id``; returns how many."""
        frame = encode_envelope(envelope)
        return self._fan_out(self._users.get(str(user_id), {}).values(), frame)

    async def send_to_connection(self, connection_id: str, envelope: EnvelopeLike) -> bool:
        """Send to one connection; ``False`` if it is gone or was just closed as slow."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        return self._fan_out((connection,), encode_envelope(envelope)) == 1

    async def disconnect_user(
        self, user_id: UserId, code: int = CloseCode.UNAUTHORIZED, reason: str = "revoked"
    ) -> int:
        """Close every connection of ``user_id`` with ``code``; returns how many.

        The default 4401 tells clients to fetch a new token, which a revoked user cannot.
        """
        connections = self.connections_of(user_id)
        for connection in connections:
            connection.close_soon(code, reason)
        return len(connections)

    def _fan_out(self, recipients: Iterable[WebSocketConnection], frame: str) -> int:
        delivered = 0
        slow: list[WebSocketConnection] = []
        for connection in recipients:
            if connection.enqueue(frame):
                delivered += 1
            elif not connection.closing:
                slow.append(connection)
        # Closing mutates the registry being iterated, so it happens after the loop.
        for connection in slow:
            self._slow_closed += 1
            logger.warning(
                "connection %s is a slow consumer (%d frames queued); closing",
                connection.connection_id,
                connection.pending,
            )
            connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        self._frames_queued += delivered
        return delivered
