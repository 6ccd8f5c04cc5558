"""This process as one node of a deployment: the hub's side of the backplane.

``Node`` owns the backplane's lifecycle (started once, lazily if need be), keeps the
node subscribed to exactly the channels its local connections need (``all``, its own
``node:<id>``, and a ``topic:``/``user:`` channel while a local connection needs it),
publishes packets, routes per-user-cap evictions to the node holding the victim, and runs
the packets other nodes publish on the local registry. Its own packets coming back are
dropped: the hub delivered them locally before publishing, so each socket gets a frame
once. A packet carrying a history position (``p``) goes to the ``sequenced`` callback
(the hub's history, which puts the topic's messages back in offset order) instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tempest_ws._bounded import STOP_TIMEOUT, bounded
from tempest_ws.backplane.base import Backplane, Member
from tempest_ws.backplane.packet import (
    ALL_CHANNEL,
    OP_CLOSE,
    OP_KICK,
    Packet,
    decode_packet,
    encode_packet,
    node_channel,
    own_prefix,
)
from tempest_ws.exceptions import BackplaneError
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._registry import Registry
from tempest_ws.observe._audit import traffic_event
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import RESYNC, encode_envelope

if TYPE_CHECKING:
    from tempest_ws.observe.tracing import Tracing

__all__ = ["ClusterStats", "Node"]

logger = logging.getLogger("tempest_ws.hub")

_EVICTION_REASON = "too many connections for user"


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """This node's view of the deployment (see ``WebSocketHub.cluster_stats``).

    Attributes:
        node_id: this process's id in the deployment.
        backplane: the backplane's class name.
        connected: whether packets flow to and from the other nodes right now.
        channels: backplane channels this node is subscribed to.
        packets_received: packets from other nodes run here.
        publish_errors: publishes that raised `BackplaneError`.
        epoch: the last ``resync`` epoch sent to clients (0: no outage seen).
    """

    node_id: str
    backplane: str
    connected: bool
    channels: int
    packets_received: int
    publish_errors: int
    epoch: int


class Node:
    """The backplane side of one hub (see the module docstring).

    Args:
        node_id: this process's id in the deployment.
        backplane: how this node reaches the others.
        registry: the hub's local connections (packets from other nodes run on them).
        presence_expired: ``(topic, user)``, called when a dead node held the last
            connection of ``user`` in ``topic`` (the hub announces the leave).
        sequenced: ``(packet) -> delivered``, given the packets carrying a history
            position (``None``: they fan out as any other).
        tracing: traces the fan-out of other nodes' packets (off with ``None``).
        budget: the send budget whose relief a backplane reader awaits after a packet.
    """

    def __init__(
        self,
        node_id: str,
        backplane: Backplane,
        registry: Registry,
        *,
        presence_expired: Callable[[str, str], None] = lambda topic, user: None,
        sequenced: Callable[[Packet], int] | None = None,
        tracing: Tracing | None = None,
        budget: SendBudget | None = None,
    ) -> None:
        self.node_id = node_id
        self._own = own_prefix(node_id)
        self.backplane = backplane
        # Looked up once: asked on every delivery. None: the backplane cannot tell.
        self._knows_listeners: Callable[[str], bool] | None = getattr(
            backplane, "reaches_others", None
        )
        self.registry = registry
        self.presence_expired = presence_expired
        self.sequenced = sequenced
        self.tracing = tracing
        self.budget = budget
        self.channels: set[str] = set()
        self._confirming: dict[str, asyncio.Future[None]] = {}
        self.running = False
        self.epoch = 0
        self.packets_in = 0
        self.publish_errors = 0
        self._starting: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backplane and subscribe ``all`` and ``node:<id>``; concurrent
        callers share one attempt, and a failed attempt can be retried."""
        if self.running:
            return
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        finally:
            if starting.done() and self._starting is starting:
                self._starting = None

    async def _start(self) -> None:
        await self.backplane.start(self.node_id, self)
        try:
            for channel in (ALL_CHANNEL, node_channel(self.node_id)):
                self.channels.add(channel)
                await self.backplane.subscribe(channel)
        except BaseException:
            self.channels.clear()
            await self.backplane.stop()
            raise
        self.running = True
        logger.info("hub node %s started (%s)", self.node_id, type(self.backplane).__name__)

    async def stop(self, limit: float = STOP_TIMEOUT) -> None:
        """Stop the backplane (it removes this node's presence). Idempotent.

        A start still under way and the backplane's ``stop`` get ``limit`` seconds each;
        past that they are abandoned (logged on ``tempest_ws.shutdown``)."""
        starting = self._starting
        if starting is not None:
            await bounded(
                asyncio.gather(starting, return_exceptions=True), "backplane start", limit=limit
            )
        if self.running:
            self.running = False
            self.channels.clear()
            name = type(self.backplane).__name__
            try:
                await bounded(self.backplane.stop(), f"{name}.stop", limit=limit)
            except Exception:  # a collaborator's failure must not break the hub's stop
                logger.exception("backplane %s failed to stop", name)
            logger.info("hub node %s stopped", self.node_id)

    def stats(self) -> ClusterStats:
        """A snapshot of this node's link and counters."""
        return ClusterStats(
            node_id=self.node_id,
            backplane=type(self.backplane).__name__,
            connected=self.running and self.backplane.connected,
            channels=len(self.channels),
            packets_received=self.packets_in,
            publish_errors=self.publish_errors,
            epoch=self.epoch,
        )

    # -- channel interest --------------------------------------------------------------

    async def want(self, channel: str) -> None:
        """Make sure this node receives ``channel``; concurrent callers all return once
        the backplane confirmed the subscription (or gave up: it then subscribes on
        reconnection)."""
        if not self.running:
            await self.start()
        if channel in self.channels:
            confirming = self._confirming.get(channel)
            if confirming is not None:
                await asyncio.shield(confirming)
            return
        self.channels.add(channel)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirming[channel] = confirmed
        try:
            await self.backplane.subscribe(channel)
        finally:
            if self._confirming.get(channel) is confirmed:
                del self._confirming[channel]
            confirmed.set_result(None)
        if not self.registry.wants(channel):  # the last local interest left meanwhile
            self.unwant(channel)

    def unwant(self, channel: str) -> None:
        """Stop receiving ``channel`` (no local connection needs it any more)."""
        if channel in self.channels:
            self.channels.discard(channel)
            if self.running:
                self.backplane.unsubscribe(channel)

    # -- out ---------------------------------------------------------------------------

    def reaches_others(self, channel: str) -> bool:
        """Whether a packet on ``channel`` may reach another node. Only a backplane that
        knows its listeners (the in-memory one) says no; the hub then skips the packet."""
        knows = self._knows_listeners
        return True if knows is None else knows(channel)

    async def publish(self, channel: str, packet: bytes) -> int:
        """Publish; count and re-raise `BackplaneError`."""
        try:
            count = await self.backplane.publish(channel, packet)
        except BackplaneError:
            self.publish_errors += 1
            raise
        traffic_event("backplane_published")
        return count

    async def enforce_user_cap(self, newcomer: WebSocketConnection, limit: int) -> int:
        """Record ``newcomer`` in presence and close the user's oldest connections past
        ``limit`` (4429), on any node; return how many. With the presence registry
        unreachable, the cap holds over this process's connections."""
        user = newcomer.user_key
        try:
            evicted = await self.backplane.presence.join(
                user,
                newcomer.connection_id,
                connected_at=newcomer.connected_at.timestamp(),
                limit=limit,
            )
        except BackplaneError as exc:
            logger.warning(
                "per-user cap for connection %s enforced in this process only: %s",
                newcomer.connection_id,
                exc,
            )
            local = [c for c in self.registry.tabs(user) if c is not newcomer]
            past = max(0, len(local) + 1 - limit)
            evicted = [Member(self.node_id, c.connection_id) for c in local[:past]]
        for member in evicted:
            logger.info(
                "connection %s evicted: user over %d connections", member.connection_id, limit
            )
        await self._evict(evicted, newcomer)
        return len(evicted)

    async def _evict(self, members: Iterable[Member], newcomer: WebSocketConnection) -> None:
        """Close evicted connections with 4429: here directly, elsewhere through their
        node's channel (an unreachable node is logged, not raised)."""
        for member in members:
            if member.node == self.node_id:
                oldest = self.registry.connections.get(member.connection_id)
                if oldest is not None and oldest is not newcomer:
                    oldest.close_soon(CloseCode.TOO_MANY_CONNECTIONS, _EVICTION_REASON)
                continue
            packet = encode_packet(
                self.node_id,
                OP_CLOSE,
                member.connection_id,
                code=CloseCode.TOO_MANY_CONNECTIONS,
                reason=_EVICTION_REASON,
            )
            try:
                await self.publish(node_channel(member.node), packet)
            except BackplaneError as exc:
                logger.warning("eviction of %s not sent: %s", member.connection_id, exc)

    # -- in (BackplaneListener) --------------------------------------------------------

    def on_packet(self, channel: str, packet: bytes) -> None:
        """Run a packet published by another node on this node's connections.

        This node's own packets are dropped (it delivered them before publishing), as
        are malformed ones (logged).
        """
        if packet.startswith(self._own):
            return  # echoed by the backplane: not worth decoding
        try:
            decoded = decode_packet(packet)
        except (ValueError, UnicodeDecodeError):
            logger.warning("dropped a malformed packet on channel %s", channel)
            return
        if decoded.node == self.node_id:
            return
        self.packets_in += 1
        if decoded.op in (OP_CLOSE, OP_KICK):
            self._close(decoded)
        elif decoded.frame is not None:
            span = None if self.tracing is None else self.tracing.fan_out(decoded, self.node_id)
            if decoded.position is not None and self.sequenced is not None:
                delivered = self.sequenced(decoded)
            else:
                recipients = self.registry.select(
                    decoded.op, decoded.target, decoded.exclude, decoded.exclude_users
                )
                delivered = self.registry.fan_out(recipients, decoded.frame)
            if span is not None:
                span.end(delivered)

    def backpressure(self) -> Awaitable[None] | None:
        """What a backplane's reader awaits after a packet: the send budget's relief when
        it queued a frame on a deep connection, else ``None``."""
        budget = self.budget
        return budget.relieve() if budget is not None and budget.pressure else None

    def _close(self, packet: Packet) -> None:
        if not 1000 <= packet.code <= 4999:
            logger.warning("dropped a %s packet with close code %r", packet.op, packet.code)
            return
        if packet.op == OP_CLOSE:
            connection = self.registry.connections.get(packet.target)
            victims = [] if connection is None else [connection]
        else:
            victims = list(self.registry.tabs(packet.target))
        for connection in victims:
            logger.info(
                "connection %s closed %d by node %s",
                connection.connection_id,
                packet.code,
                packet.node,
            )
            connection.close_soon(packet.code, packet.reason)

    def on_presence_expired(self, topic: str, user: str) -> None:
        """A dead node held the last connection of ``user`` in ``topic``: the hub
        announces the leave."""
        self.presence_expired(topic, user)

    def on_resync(self) -> None:
        """The backplane recovered from an outage: tell every local client, with a new
        epoch, that it may have missed messages (``{"type": "resync"}``)."""
        self.epoch = max(self.epoch + 1, int(time.time() * 1000))
        connections = list(self.registry.connections.values())
        logger.warning(
            "backplane recovered: resync epoch %d sent to %d connections",
            self.epoch,
            len(connections),
        )
        frame = encode_envelope(
            {
                "type": RESYNC,
                "data": {"epoch": self.epoch, "node": self.node_id, "reason": "backplane"},
            }
        )
        self.registry.fan_out(connections, frame)
