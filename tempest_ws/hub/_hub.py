"""``WebSocketHub``: the registry of live connections and every way to deliver to them.

Callable from any coroutine in the process (HTTP handlers included). Each delivery
serializes the envelope once and hands the same string to every recipient; it never
awaits a socket and holds no lock. Flow control (``tempest_ws.hub._flow``): a recipient
past its byte or frame budget, or whose queue has not moved for ``slow_consumer_timeout``,
is closed 1013; a delivery that leaves a queue deep waits, a bounded time, for the writers.

Across processes every operation keeps its meaning through the backplane: the hub
delivers to its own connections first, then publishes one packet (the frame already
serialized) that every other node fans out to its own. A node drops its own packets when
they come back, so each socket gets a frame once (``docs/scaling.md``).

The hub composes one collaborator per job, built in this order, each given what it needs:
the registry (``_registry``), the topic presence (``_presence``), the node (``_node``),
the history (``history/``), the deliveries (``_delivery``) and the membership
(``_membership``: registration, subscriptions, authorization). Here: construction, the
lifecycle and the connections; the methods that move messages (deliveries, topics,
presence, history) are [`HubMessaging`][tempest_ws.hub._messaging.HubMessaging]'s.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any, Self

from tempest_ws._bounded import STOP_TIMEOUT, bounded, check_stop_timeout
from tempest_ws._types import Send, UserId
from tempest_ws.backplane.base import Backplane
from tempest_ws.backplane.memory import InMemoryBackplane
from tempest_ws.backplane.packet import Packet, is_node_id, new_node_id
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.history.base import HistoryStore
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.hub._authz import TopicAuthorizer, TopicGate
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._delivery import Delivery
from tempest_ws.hub._direct import TickFlusher
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._membership import MAX_TOPIC_LENGTH, Membership
from tempest_ws.hub._messaging import HubMessaging
from tempest_ws.hub._node import ClusterStats, Node
from tempest_ws.hub._presence import PresenceSetting, TopicPresence
from tempest_ws.hub._registry import HubStats, Registry
from tempest_ws.hub.history._build import build_history, history_from_settings, history_spec
from tempest_ws.hub.history._topic import HistoryStats
from tempest_ws.observe._server_options import ServerOptionCounts
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.codes import CloseCode

if TYPE_CHECKING:
    from tempest_ws.observe.tracing import Tracing

__all__ = ["MAX_TOPIC_LENGTH", "ClusterStats", "HistoryStats", "HubStats", "WebSocketHub"]


class WebSocketHub(HubMessaging):
    """Registry of connections by id, user and topic, with broadcast and targeted sends.

    Args:
        max_per_user: connections one user may hold (across every node sharing the
            backplane); registering one more closes that user's oldest connection, wherever
            it lives, with 4429.
        max_connections: connections in this process; past it ``register`` raises
            `CapacityError` and the router closes the newcomer 1013.
        send_queue_size: frames queued per connection before it is a slow consumer.
        send_queue_bytes: bytes of frames queued per connection before it is one.
        slow_consumer_timeout: seconds queued frames may sit before it is one.
        producer_wait: longest a delivery waits for deep queues to drain (0: never).
        close_timeout: seconds a close may take before the transport is aborted.
        backplane: how this hub reaches the others; an `InMemoryBackplane` of its
            own by default (one process).
        node_id: this process's id in the deployment (12 hex digits); random by default.
        topic_authorizer: ``(connection, topic) -> bool`` (sync or async) asked before
            every new subscription and every ``presence.get``; only ``True`` admits
            (see `subscribe()`). Required with ``presence`` or history: such a hub
            refuses to start without one (``allow_any_topic`` opens every topic).
        authorizer_timeout: seconds the authorizer may take before it counts as a denial.
        max_topics_per_connection: topics one connection may be subscribed to; past it
            `subscribe()` raises [`TopicLimitError`][tempest_ws.exceptions.TopicLimitError].
        presence: keep topic presence (``presence.join``/``presence.leave`` events,
            `presence()`) for every topic (``True``) or the topics a predicate accepts.
        require_topic: refuse `broadcast()` without a topic (unless ``everyone=True``),
            so a forgotten ``topic=`` cannot reach every tenant.
        history: where the topics ``history_policy`` keeps store their messages; a
            [`MemoryHistory`][tempest_ws.history.MemoryHistory] by default when a policy is given.
            The hub closes it on `stop()`.
        history_policy: which topics keep history; the store's own ``policy`` by default.
        history_gap_timeout: seconds a node holds messages of a history topic behind a
            missing one before it fetches it from the store (or gives it up).
        tracing: OpenTelemetry tracing ([`Tracing`][tempest_ws.observe.tracing.Tracing]): deliveries
            carry the caller's trace context to the other nodes, which trace their
            fan-out; the router traces inbound messages with it too. Off by default.
        stop_timeout: seconds each step of `stop()` after the connections' close
            (bounded through ``close_timeout``) may take, the topic cleanups included;
            past that it is abandoned.

    Deliveries take a [`WSEnvelope`][tempest_ws.wire.envelope.WSEnvelope] or a mapping and return
    how many connections *of this process* got the frame. A closed or slow recipient is
    closed and unregistered, never raised for. When the backplane cannot carry a delivery
    to the other nodes, the local recipients have it already and the call raises
    [`BackplaneError`][tempest_ws.exceptions.BackplaneError].

    The hub starts with the router's lifespan; used before that, it starts itself.
    """

    def __init__(
        self,
        *,
        max_per_user: int = 5,
        max_connections: int = 10_000,
        send_queue_size: int = 1024,
        send_queue_bytes: int = 1 << 20,
        slow_consumer_timeout: float = 5.0,
        producer_wait: float = 2.0,
        close_timeout: float = 2.0,
        backplane: Backplane | None = None,
        node_id: str | None = None,
        topic_authorizer: TopicAuthorizer | None = None,
        authorizer_timeout: float = 5.0,
        max_topics_per_connection: int = 256,
        presence: PresenceSetting = False,
        require_topic: bool = False,
        history: HistoryStore | None = None,
        history_policy: HistoryPolicy | None = None,
        history_gap_timeout: float = 1.0,
        tracing: Tracing | None = None,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        limits = (max_per_user, max_connections, send_queue_size, send_queue_bytes)
        if min(*limits, max_topics_per_connection) < 1:
            raise ConfigurationError("hub limits must be at least 1")
        timeouts = (close_timeout, authorizer_timeout, slow_consumer_timeout, history_gap_timeout)
        if not (all(t > 0 for t in timeouts) and producer_wait >= 0):
            raise ConfigurationError("hub timeouts must be positive")
        if node_id is not None and not is_node_id(node_id):
            raise ConfigurationError("node_id must be 12 lowercase hex digits")
        self.max_per_user = max_per_user
        self.max_connections = max_connections
        self.send_queue_size = send_queue_size
        self.send_budget = SendBudget(  # shared by this hub's connections
            max_bytes=send_queue_bytes, max_frames=send_queue_size,
            stall_timeout=slow_consumer_timeout, producer_wait=producer_wait,
        )  # fmt: skip
        self._flusher = TickFlusher()  # one end-of-tick write callback for all sockets
        self.close_timeout = close_timeout
        self.stop_timeout = check_stop_timeout(stop_timeout)
        self.backplane: Backplane = backplane if backplane is not None else InMemoryBackplane()
        self.node_id = node_id or new_node_id()
        self.authorizer_timeout = authorizer_timeout
        self.max_topics_per_connection = max_topics_per_connection
        self.tracing = tracing
        self.server_guard = ServerOptionCounts()  # what the routers saw the server negotiate
        spec = history_spec(history, history_policy, history_gap_timeout)
        # Built in order, each part given what it needs. Two call parts built after them,
        # through the hub: the presence announces through the deliveries (_announce), the
        # node hands positioned packets to the history (_sequenced).
        self._registry = Registry()
        self._presence = TopicPresence(self.backplane, self._announce, presence)
        self._node = Node(
            self.node_id, self.backplane, self._registry,
            presence_expired=self._presence.expired,
            sequenced=None if spec is None else self._sequenced,
            tracing=tracing, budget=self.send_budget,
        )  # fmt: skip
        self._history = None if spec is None else build_history(spec, self._node, send_queue_size)
        self._delivery = Delivery(
            self._node, self._history, self.send_budget, tracing, require_topic=require_topic
        )
        self._membership = Membership(
            self._registry, self._node, self._presence, self._history,
            TopicGate(topic_authorizer, authorizer_timeout),
            max_per_user=max_per_user, max_connections=max_connections,
            max_topics=max_topics_per_connection,
        )  # fmt: skip
        super().__init__(self._delivery, self._membership, self._history)

    @classmethod
    def from_settings(
        cls,
        settings: WebSocketSettings,
        *,
        backplane: Backplane | None = None,
        topic_authorizer: TopicAuthorizer | None = None,
        presence: PresenceSetting = False,
        require_topic: bool = False,
        history: HistoryStore | None = None,
        tracing: Tracing | None = None,
    ) -> Self:
        """Build the hub the settings describe (caps, send budget, close timeout,
        history), with the realtime options given as keyword arguments.

        With ``WS_REDIS_URL`` set (and no ``backplane`` given) the hub uses a
        [`RedisBackplane`][tempest_ws.backplane.RedisBackplane] from the ``WS_REDIS_*`` settings
        (importing redis only then). Topics ``WS_HISTORY_TOPICS`` names (and no
        ``history`` given) keep history in a [`RedisHistory`][tempest_ws.history.RedisHistory]
        with ``WS_REDIS_URL``, a [`MemoryHistory`][tempest_ws.history.MemoryHistory] without.
        """
        if backplane is None and settings.WS_REDIS_URL:
            from tempest_ws.backplane.redis import RedisBackplane

            backplane = RedisBackplane.from_settings(settings)
        history, policy = history_from_settings(settings, history)
        return cls(
            max_per_user=settings.WS_MAX_CONNECTIONS_PER_USER,
            max_connections=settings.WS_MAX_CONNECTIONS,
            send_queue_size=settings.WS_SEND_QUEUE_SIZE,
            send_queue_bytes=settings.WS_SEND_QUEUE_BYTES,
            slow_consumer_timeout=settings.WS_SLOW_CONSUMER_TIMEOUT_SECONDS,
            producer_wait=settings.WS_PRODUCER_WAIT_SECONDS,
            close_timeout=settings.WS_CLOSE_TIMEOUT_SECONDS,
            max_topics_per_connection=settings.WS_MAX_TOPICS_PER_CONNECTION,
            backplane=backplane,
            topic_authorizer=topic_authorizer,
            presence=presence,
            require_topic=require_topic,
            history=history,
            history_policy=policy,
            history_gap_timeout=settings.WS_HISTORY_GAP_TIMEOUT_SECONDS,
            tracing=tracing,
        )

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Join the deployment through the backplane. Idempotent; the router's lifespan
        calls it, and every other coroutine method calls it first if needed.

        An unreachable Redis is not an error here: the backplane keeps trying in the
        background, this process's connections work meanwhile, and clients get a
        ``resync`` envelope once it gets through.

        Raises:
            ConfigurationError: the hub keeps presence or history but has no
                ``topic_authorizer`` (topics are closed by default).
        """
        self._membership.check_authorizer()
        await self._node.start()

    async def stop(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutdown") -> None:
        """Close every connection with ``code`` (concurrently), empty the registry and
        leave the deployment (this node's presence is removed; the ``presence.leave``
        events its users cause are sent first, within ``close_timeout``), then close the
        history store. Idempotent; never hangs (see ``stop_timeout``)."""
        connections = list(self._registry.connections.values())
        await asyncio.gather(*(c.close(code, reason) for c in connections), return_exceptions=True)
        await bounded(self._membership.finish_cleanups(), "topic cleanups", limit=self.stop_timeout)
        await self._presence.settle(self.close_timeout)
        await self._presence.stop(self.stop_timeout)
        await self._node.stop(self.stop_timeout)
        if self._history is not None:
            await self._history.stop(self.stop_timeout)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- registry -----------------------------------------------------------------

    def create_connection(
        self,
        user_id: UserId,
        *,
        send: Send,
        transport: asyncio.WriteTransport | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebSocketConnection:
        """Build a connection with this hub's send budget and close timeout (not registered).

        Its id, ``<node id>.<uuid4 hex>``, names this node, so
        `send_to_connection()` reaches it from any node.
        """
        return WebSocketConnection(
            user_id,
            send=send,
            budget=self.send_budget,
            close_timeout=self.close_timeout,
            transport=transport,
            metadata=metadata,
            connection_id=f"{self.node_id}.{uuid.uuid4().hex}",
            flusher=self._flusher,
        )

    async def register(self, connection: WebSocketConnection) -> None:
        """Add ``connection``; evict the user's oldest connections (4429) past the cap.

        The cap counts the user's connections on every node; the oldest are closed
        wherever they live. While the backplane is unreachable the cap holds per process.

        Raises:
            CapacityError: the process already holds ``max_connections`` (after counting
                the evictions this registration would make here). Nothing is evicted then.
            ConfigurationError: presence or history without a ``topic_authorizer``.
        """
        await self._membership.add(connection)

    def unregister(self, connection: WebSocketConnection) -> None:
        """Remove ``connection`` and its subscriptions. Idempotent."""
        self._membership.discard(connection)

    def get(self, connection_id: str) -> WebSocketConnection | None:
        """The live connection with this id in this process, or ``None``."""
        return self._registry.connections.get(connection_id)

    def connections_of(self, user_id: UserId) -> list[WebSocketConnection]:
        """The user's live connections in this process, oldest first."""
        return list(self._registry.tabs(str(user_id)))

    def stats(self) -> HubStats:
        """Counts of connections, users, topics and the delivery counters (this process)."""
        registry = self._registry
        return HubStats(
            connections=len(registry.connections),
            users=len(registry.users),
            topics=len(registry.topics),
            subscriptions=sum(len(m) for m in registry.topics.values()),
            frames_queued=registry.frames_queued,
            slow_consumers_closed=registry.slow_closed + self.send_budget.stalled,
            evicted_over_user_cap=self._membership.evicted,
            rejected_at_capacity=self._membership.rejected,
        )

    def cluster_stats(self) -> ClusterStats:
        """This node's id, backplane state and cross-process counters."""
        return self._node.stats()

    async def _announce(self, kind: str, topic: str, user: str) -> None:
        """The presence's ``announce``: one presence event, through the deliveries."""
        await self._delivery.announce(kind, topic, user)

    def _sequenced(self, packet: Packet) -> int:
        """The node's ``sequenced``: a packet carrying a history position."""
        return 0 if self._history is None else self._history.on_packet(packet)
