"""The hub's local index and fan-out: this process's connections by id, user and topic.

No I/O and no awaits: adding, removing and subscribing report which backplane channels
gained or lost their last local interest, target sets are computed from the indexes, and
fan-out only hands one shared string to each recipient (written at once, or queued within
the connection's budget). A recipient past its budget is closed 1013 (a slow consumer)
after the loop.

Fan-out writes in one pass (`offer_all`), without a call to each connection's
``enqueue``. A connection registered with its ``enqueue`` replaced (what
[`HubProbe`][tempest_ws.testing.HubProbe] does to record deliveries) is remembered, and
while the registry holds one, every fan-out calls each recipient's ``enqueue``: the check
is made once per fan-out, not per recipient.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from tempest_ws.backplane.packet import OP_ALL, OP_CONN, OP_USER, user_channel
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._fanout import offer_all
from tempest_ws.wire.codes import CloseCode

__all__ = ["HubStats", "Registry", "id_set"]

logger = logging.getLogger("tempest_ws.hub")


def id_set(values: str | Iterable[Any] | None) -> frozenset[str]:
    """Ids given as one id, an iterable of them, or ``None``, as strings."""
    if values is None:
        return frozenset()
    if isinstance(values, str):
        return frozenset((values,))
    return frozenset(str(v) for v in values)


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


class Registry:
    """Connections of this process by id, user (oldest first) and topic.

    ``users`` maps a user to its one connection, or to a tuple of them when it has
    several (replaced when one comes or goes): a user has a few at most
    (``WS_MAX_CONNECTIONS_PER_USER``) and most have one, so nothing is made for them.
    Read it with `tabs()`.
    """

    def __init__(self) -> None:
        self.connections: dict[str, WebSocketConnection] = {}
        self.users: dict[str, WebSocketConnection | tuple[WebSocketConnection, ...]] = {}
        self.topics: dict[str, dict[str, WebSocketConnection]] = {}
        self.frames_queued = 0
        self.slow_closed = 0
        self._hooked: set[str] = set()  # ids of connections whose enqueue was replaced

    def add(self, connection: WebSocketConnection) -> bool:
        """Index ``connection``; ``True`` when it is its user's first one here."""
        self.connections[connection.connection_id] = connection
        if getattr(connection.enqueue, "__self__", None) is not connection:
            self._hooked.add(connection.connection_id)  # a wrapper: fan out through it
        user = connection.user_key
        held = self.users.get(user)
        if held is None:
            self.users[user] = connection
            return True
        tabs = held if isinstance(held, tuple) else (held,)
        if connection not in tabs:
            self.users[user] = (*tabs, connection)
        return False

    def tabs(self, user: str) -> tuple[WebSocketConnection, ...]:
        """``user``'s connections here, oldest first (empty when it has none)."""
        held = self.users.get(user)
        if held is None:
            return ()
        return held if isinstance(held, tuple) else (held,)

    def remove(self, connection: WebSocketConnection) -> list[str] | None:
        """Drop ``connection`` from the connection and user indexes (its topics stay
        until `leave()`); return the channels that lost their last local interest
        (``None`` when it was not indexed)."""
        cid = connection.connection_id
        if self.connections.pop(cid, None) is None:
            return None
        self._hooked.discard(cid)
        idle: list[str] = []
        user = connection.user_key
        rest = tuple(c for c in self.tabs(user) if c is not connection)
        if len(rest) > 1:
            self.users[user] = rest
        elif rest:
            self.users[user] = rest[0]
        elif user in self.users:
            del self.users[user]
            idle.append(user_channel(user))
        return idle

    def leave(self, connection: WebSocketConnection, topics: Iterable[str]) -> set[str]:
        """Drop a removed connection from ``topics``; return the topics it was the last
        local member of (the connection's own ``topics`` set is left as it is)."""
        cid = connection.connection_id
        emptied: set[str] = set()
        for topic in topics:
            members = self.topics.get(topic)
            if members is not None:
                members.pop(cid, None)
                if not members:
                    del self.topics[topic]
                    emptied.add(topic)
        return emptied

    def subscribe(self, connection: WebSocketConnection, topic: str) -> bool:
        """Add a subscription; ``True`` when it is the topic's first one here."""
        connection.topics.add(topic)
        members = self.topics.setdefault(topic, {})
        members[connection.connection_id] = connection
        return len(members) == 1

    def unsubscribe(self, connection: WebSocketConnection, topic: str) -> bool | None:
        """Remove a subscription: ``None`` if there was none, else whether it was the
        topic's last one here."""
        members = self.topics.get(topic)
        if members is None or connection.connection_id not in members:
            return None
        connection.topics.discard(topic)
        del members[connection.connection_id]
        if members:
            return False
        del self.topics[topic]
        return True

    def wants(self, channel: str) -> bool:
        """Whether a local connection still needs ``channel``."""
        kind, _, name = channel.partition(":")
        if kind == "topic":
            return name in self.topics
        if kind == "user":
            return name in self.users
        return True

    def select(
        self,
        op: str,
        target: str = "",
        exclude: Collection[str] = (),
        exclude_users: Collection[str] = (),
    ) -> Iterable[WebSocketConnection]:
        """The local recipients of one operation (see ``backplane.packet``'s ``OP_*``).

        A live view when nothing is excluded: iterate it before the registry changes.
        """
        if op == OP_CONN:
            connection = self.connections.get(target)
            return () if connection is None else (connection,)
        if op == OP_USER:
            return self.tabs(target)
        pool = self.connections if op == OP_ALL else self.topics.get(target, {})
        if not exclude and not exclude_users:
            return pool.values()
        return [
            c
            for c in pool.values()
            if c.connection_id not in exclude and c.user_key not in exclude_users
        ]

    def fan_out(self, recipients: Iterable[WebSocketConnection], frame: str) -> int:
        """Queue ``frame`` for each recipient; close the slow ones 1013; return how many
        got it."""
        slow: list[WebSocketConnection] = []
        if self._hooked:
            delivered = 0
            for connection in recipients:
                if connection.enqueue(frame):
                    delivered += 1
                elif not connection.closing:
                    slow.append(connection)
        else:
            delivered = offer_all(recipients, frame, slow)
        # Closing mutates the registry being iterated, so it happens after the loop.
        for connection in slow:
            self.slow_closed += 1
            logger.warning(
                "connection %s is a slow consumer (%d frames, %d bytes queued); closing",
                connection.connection_id,
                connection.pending,
                connection.pending_bytes,
            )
            connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        self.frames_queued += delivered
        return delivered
