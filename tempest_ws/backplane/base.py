"""The backplane contract: what a hub needs to span several processes.

A backplane moves already-serialized packets between the hubs of a deployment and keeps
the cluster-wide presence registry (who is online, whose tab is the oldest, who is in
which topic). It knows nothing of sockets, envelopes or fan-out: the hub of each process
does the fan-out to its own connections. Two implementations ship:
[`InMemoryBackplane`][tempest_ws.backplane.InMemoryBackplane] (one process, the default) and
[`RedisBackplane`][tempest_ws.backplane.RedisBackplane].

The same test body (``tests/redis/test_backplane_contract.py``) runs against both; a third
implementation (NATS, Postgres ``LISTEN``...) passes that test to be a drop-in.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple, Protocol

__all__ = ["Backplane", "BackplaneListener", "Member", "Presence"]


class Member(NamedTuple):
    """One connection in the presence registry: the node that holds it, and its id."""

    node: str
    connection_id: str


class BackplaneListener(Protocol):
    """What a backplane calls back (the hub). The methods run on the event loop and
    must not block; an exception they raise is logged and the backplane carries on.

    A listener may also offer ``backpressure() -> Awaitable[None] | None``: a backplane
    that reads packets in a loop (Redis) calls it after each packet and awaits what it
    returns before reading the next, so a burst from other nodes lets local writers run.
    """

    def on_packet(self, channel: str, packet: bytes) -> None:
        """A packet arrived on a subscribed channel (maybe one this node published)."""

    def on_resync(self) -> None:
        """The link to the other nodes came back after an outage; every subscription is
        active again. Packets published meanwhile were lost (at-most-once)."""

    def on_presence_expired(self, topic: str, user: str) -> None:
        """A dead node (one that stopped refreshing its presence) was the last live node
        holding ``user`` in ``topic``: the user has left the topic. Called on the one
        live node that cleans up after the dead one."""


# --8<-- [start:protocol]
class Presence(Protocol):
    """The cluster-wide registry of connections, by user, ordered by connection time;
    and of topic members, by user, ref-counted per node (the hub counts the tabs)."""

    async def join(
        self, user: str, connection_id: str, *, connected_at: float, limit: int
    ) -> list[Member]:
        """Record a connection of ``user`` made at ``connected_at`` (Unix seconds).

        Returns the members to evict so that ``user`` keeps at most ``limit`` connections
        (oldest first, never the new one); they are already removed from the registry.

        Raises:
            BackplaneError: the registry could not be reached; the caller enforces the
                cap on what it sees locally. The connection is recorded again when the
                link comes back.
        """
        ...

    def leave(self, user: str, connection_id: str) -> None:
        """Forget a connection. Never blocks or raises; applied in order with ``join``."""

    async def online_users(self) -> set[str]:
        """Users with at least one connection on a live node.

        Raises:
            BackplaneError: the registry could not be reached.
        """
        ...

    async def is_online(self, user: str) -> bool:
        """Whether ``user`` has a connection on a live node.

        Raises:
            BackplaneError: the registry could not be reached.
        """
        ...

    def topic_join(self, topic: str, user: str) -> asyncio.Future[bool]:
        """This node now holds a subscriber of ``topic`` who is ``user`` (it held none).

        The future resolves ``True`` when no live node held ``user`` in ``topic`` before:
        a join to announce (exactly one of several concurrent joins gets ``True``). It
        fails with ``BackplaneError`` when the registry cannot be reached; the entry is
        written when the link comes back. Never blocks; applied in call order with
        ``topic_leave``.
        """
        ...

    def topic_leave(self, topic: str, user: str) -> asyncio.Future[bool]:
        """This node no longer holds a subscriber of ``topic`` who is ``user``.

        The future resolves ``True`` when no live node holds ``user`` in ``topic`` any
        more: a leave to announce. Fails with ``BackplaneError`` as ``topic_join`` does.
        """
        ...

    async def topic_members(self, topic: str) -> set[str]:
        """Users subscribed to ``topic`` on a live node (nodes that keep presence for it).

        Raises:
            BackplaneError: the registry could not be reached.
        """
        ...


class Backplane(Protocol):
    """Moves packets between processes. About five methods, nothing about sockets.

    Channels are logical names (``all``, ``topic:<name>``...); an implementation may
    prefix them. Packets published on a channel reach every other node subscribed to
    it, in publish order per publisher; whether the publisher gets its own back is up to
    the implementation (Redis: yes), as the hub drops them by node id.
    """

    @property
    def presence(self) -> Presence:
        """The cluster-wide presence registry."""
        ...

    @property
    def connected(self) -> bool:
        """Whether packets currently flow to and from the other nodes."""
        ...

    async def start(self, node_id: str, listener: BackplaneListener) -> None:
        """Join the deployment as ``node_id``; deliver packets to ``listener``.

        Returns once connected or after a bounded wait; an unreachable server is not an
        error here (the backplane keeps trying in the background and calls
        ``listener.on_resync()`` when it gets through).
        """

    async def stop(self) -> None:
        """Leave the deployment: drop subscriptions and this node's presence. Idempotent."""

    async def publish(self, channel: str, packet: bytes) -> int:
        """Send ``packet`` to the nodes subscribed to ``channel``; return how many there
        were (as the server counts them).

        Raises:
            BackplaneError: the packet may not have reached the other nodes (server down,
                timeout, too many publishes waiting). Never retried, so never duplicated.
        """
        ...

    async def subscribe(self, channel: str) -> None:
        """Receive packets published on ``channel`` from now on.

        Returns once the server confirmed it, or at once while the link is down (the
        subscription is made when the link comes back). Never raises for an outage.
        """

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``. Never blocks; applied in order with ``subscribe``."""
        # --8<-- [end:protocol]
