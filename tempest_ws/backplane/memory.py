"""``InMemoryBackplane``: the default backplane, for one process and no server.

Each hub gets its own private `InMemoryBus` unless given a shared one. Several
hubs of one process (one event loop) sharing a bus behave like the nodes of a Redis
deployment — packets are delivered asynchronously (on the next loop iteration), presence
is shared — which makes the cross-process semantics testable in milliseconds. Unlike
Redis, the bus does not hand a publisher its own packets back (the hub would drop them),
so a lone hub pays next to nothing for its backplane.

Every local user of a hub holds a ``user:`` channel and a presence entry here, so both are
kept small: a channel only one node listens on shares that node's one-entry listener
map (maps are replaced, never changed in place), and a user's presence is one flat
tuple, ``(connected_at, node, connection_id)`` for each of the user's connections.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from tempest_ws.backplane.base import BackplaneListener, Member
from tempest_ws.exceptions import BackplaneError

__all__ = ["InMemoryBackplane", "InMemoryBus"]

logger = logging.getLogger("tempest_ws.backplane")


Entry = tuple[float, str, str]
"""One connection in presence: ``(connected_at, node, connection_id)``."""


def _entries(flat: tuple[float | str, ...]) -> list[Entry]:
    """The entries of a user's flat presence tuple."""
    return cast(list[Entry], list(zip(flat[0::3], flat[1::3], flat[2::3], strict=True)))


def _flat(entries: list[Entry]) -> tuple[float | str, ...]:
    return tuple(value for entry in entries for value in entry)


def _deliver(listener: BackplaneListener, channel: str, packet: bytes) -> None:
    try:
        listener.on_packet(channel, packet)
    except Exception:  # a listener's bug must not stop delivery to the others
        logger.exception("backplane listener failed on channel %s", channel)


class InMemoryBus:
    """The shared medium of the in-memory backplanes of one process."""

    def __init__(self) -> None:
        # channel -> node -> listener; each map is replaced on a change, never changed in
        # place, so the channels only one node listens on share that node's map
        self.subscribers: dict[str, dict[str, BackplaneListener]] = {}
        # user -> connected_at, node, connection_id of each connection, in one flat tuple
        self.members: dict[str, tuple[float | str, ...]] = {}
        # topic presence: topic -> user -> the nodes holding that user in the topic
        self.topics: dict[str, dict[str, set[str]]] = {}

    def publish(self, sender: str, channel: str, packet: bytes) -> int:
        """Schedule delivery to every subscriber of ``channel`` but ``sender`` (whose hub
        drops its own packets anyway); return how many subscribers there are, as Redis
        counts them (``sender`` included)."""
        listeners = self.subscribers.get(channel)
        if not listeners:
            return 0
        loop = asyncio.get_running_loop()
        for node, listener in listeners.items():
            if node != sender:
                loop.call_soon(_deliver, listener, channel, packet)
        return len(listeners)


class _InMemoryPresence:
    def __init__(self, backplane: InMemoryBackplane) -> None:
        self._backplane = backplane

    async def join(
        self, user: str, connection_id: str, *, connected_at: float, limit: int
    ) -> list[Member]:
        bus, node = self._backplane.bus, self._backplane.node_id
        flat = bus.members.get(user)
        if flat is None:  # the common case: the user's first connection anywhere
            bus.members[user] = (connected_at, node, connection_id)
            return []
        others = [e for e in _entries(flat) if e[1:] != (node, connection_id)]
        overflow = len(others) + 1 - limit
        evicted = sorted(others, key=lambda entry: entry[0])[:overflow] if overflow > 0 else []
        kept = [e for e in others if e not in evicted]
        bus.members[user] = _flat([*kept, (connected_at, node, connection_id)])
        return [Member(e[1], e[2]) for e in evicted]

    def leave(self, user: str, connection_id: str) -> None:
        bus, node = self._backplane.bus, self._backplane.node_id
        flat = bus.members.get(user)
        if flat is None:
            return
        rest = [e for e in _entries(flat) if e[1:] != (node, connection_id)]
        if rest:
            bus.members[user] = _flat(rest)
        else:
            del bus.members[user]

    async def online_users(self) -> set[str]:
        return set(self._backplane.bus.members)

    async def is_online(self, user: str) -> bool:
        return user in self._backplane.bus.members

    def topic_join(self, topic: str, user: str) -> asyncio.Future[bool]:
        nodes = self._backplane.bus.topics.setdefault(topic, {}).setdefault(user, set())
        first = not nodes
        nodes.add(self._backplane.node_id)
        return _resolved(first)

    def topic_leave(self, topic: str, user: str) -> asyncio.Future[bool]:
        users = self._backplane.bus.topics.get(topic, {})
        nodes = users.get(user)
        if nodes is None or self._backplane.node_id not in nodes:
            return _resolved(False)
        nodes.discard(self._backplane.node_id)
        if nodes:
            return _resolved(False)
        del users[user]
        if not users:
            del self._backplane.bus.topics[topic]
        return _resolved(True)

    async def topic_members(self, topic: str) -> set[str]:
        return set(self._backplane.bus.topics.get(topic, {}))

    def forget_node(self) -> None:
        """Drop every entry of this node (it stopped)."""
        bus, node = self._backplane.bus, self._backplane.node_id
        for user, flat in list(bus.members.items()):
            rest = [e for e in _entries(flat) if e[1] != node]
            if rest:
                bus.members[user] = _flat(rest)
            else:
                del bus.members[user]
        for topic, users in list(bus.topics.items()):
            for user, nodes in list(users.items()):
                nodes.discard(node)
                if not nodes:
                    del users[user]
            if not users:
                del bus.topics[topic]


def _resolved(value: bool) -> asyncio.Future[bool]:
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class InMemoryBackplane:
    """A backplane inside one process.

    Args:
        bus: share one `InMemoryBus` between the hubs that should see each
            other; by default the backplane has a bus of its own (a single hub).
    """

    def __init__(self, bus: InMemoryBus | None = None) -> None:
        self.bus = bus if bus is not None else InMemoryBus()
        self.node_id = ""
        self._listener: BackplaneListener | None = None
        self._alone: dict[str, BackplaneListener] = {}  # {node_id: listener}, shared
        self._presence = _InMemoryPresence(self)

    @property
    def presence(self) -> _InMemoryPresence:
        """Presence shared by every backplane on the bus."""
        return self._presence

    @property
    def connected(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._listener is not None

    async def start(self, node_id: str, listener: BackplaneListener) -> None:
        """Attach to the bus as ``node_id``."""
        self.node_id = node_id
        self._listener = listener
        self._alone = {node_id: listener}

    async def stop(self) -> None:
        """Detach: drop subscriptions and this node's presence."""
        node = self.node_id
        for channel in [c for c, nodes in self.bus.subscribers.items() if node in nodes]:
            self.unsubscribe(channel)
        self._presence.forget_node()
        self._listener = None

    def reaches_others(self, channel: str) -> bool:
        """Whether a node other than this one listens on ``channel`` now: when none does,
        the hub skips building and publishing the packet (a lone hub's common case)."""
        listeners = self.bus.subscribers.get(channel)
        if not listeners:
            return False
        return len(listeners) > 1 or self.node_id not in listeners

    async def publish(self, channel: str, packet: bytes) -> int:
        """Deliver on the next loop iteration to every other subscribed node.

        Raises:
            BackplaneError: the backplane is not started.
        """
        if self._listener is None:
            raise BackplaneError("in-memory backplane is not started")
        return self.bus.publish(self.node_id, channel, packet)

    async def subscribe(self, channel: str) -> None:
        """Receive ``channel`` from now on."""
        if self._listener is None:
            raise BackplaneError("in-memory backplane is not started")
        subscribers, node = self.bus.subscribers, self.node_id
        listeners = subscribers.get(channel)
        if listeners is None:
            subscribers[channel] = self._alone
        elif listeners.get(node) is not self._listener:
            subscribers[channel] = {**listeners, node: self._listener}

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""
        subscribers, node = self.bus.subscribers, self.node_id
        listeners = subscribers.get(channel)
        if listeners is not None and node in listeners:
            rest = {n: listener for n, listener in listeners.items() if n != node}
            if rest:
                subscribers[channel] = rest
            else:
                del subscribers[channel]
