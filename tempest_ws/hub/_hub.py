"""``WebSocketHub``: the registry of live connections and every way to deliver to them.

Callable from any coroutine in the process (HTTP handlers included). Each delivery
serializes the envelope once and hands the same string to every recipient; it never
awaits a socket and holds no lock. Flow control (``tempest_ws._flow``): a recipient past
its byte or frame budget, or whose queue has not moved for ``slow_consumer_timeout``, is
closed 1013; a delivery that leaves a queue deep waits, a bounded time, for the writers.

Across processes every operation keeps its meaning through the backplane: the hub
delivers to its own connections first, then publishes one packet (the frame already
serialized) that every other node fans out to its own. A node drops its own packets when
they come back, so each socket gets a frame once (``docs/scaling.md``).

Opt-in (``docs/realtime.md``, ``docs/history.md``): a ``topic_authorizer``,
``require_topic``, topic ``presence``, and per topic pattern message history.

Bases, one job each: [`tempest_ws.hub._membership`][tempest_ws.hub._membership] (subscriptions,
authorization,
presence), [`tempest_ws.hub._targets`][tempest_ws.hub._targets] (one user, one connection, replies,
kicks) and
[`tempest_ws.hub.history._access`][tempest_ws.hub.history._access] (history); here: construction,
the
lifecycle, the
registry and broadcasts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from tempest_ws._bounded import STOP_TIMEOUT, bounded, check_stop_timeout
from tempest_ws._types import Send, Topic, UserId
from tempest_ws.backplane.base import Backplane
from tempest_ws.backplane.memory import InMemoryBackplane
from tempest_ws.backplane.packet import (
    ALL_CHANNEL,
    OP_ALL,
    OP_TOPIC,
    encode_packet,
    is_node_id,
    new_node_id,
    topic_channel,
    user_channel,
)
from tempest_ws.exceptions import CapacityError, ConfigurationError
from tempest_ws.history.base import HistoryStore
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.hub._authz import TopicAuthorizer
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._membership import MAX_TOPIC_LENGTH, HubMembership
from tempest_ws.hub._node import ClusterStats, Node
from tempest_ws.hub._presence import PresenceSetting, TopicPresence
from tempest_ws.hub._registry import HubStats, Registry, id_set
from tempest_ws.hub._targets import TargetedSends
from tempest_ws.hub.history._access import (
    HistoryAccess,
    HistoryStats,
    history_from_settings,
    make_history,
)
from tempest_ws.router._server_guard import ServerGuard
from tempest_ws.router._transport import TickFlusher
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import EnvelopeLike, encode_envelope

if TYPE_CHECKING:
    from tempest_ws.observe.tracing import Tracing

__all__ = ["MAX_TOPIC_LENGTH", "ClusterStats", "HistoryStats", "HubStats", "WebSocketHub"]

logger = logging.getLogger("tempest_ws.hub")


class WebSocketHub(HubMembership, TargetedSends, HistoryAccess):
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
        if (
            min(
                max_per_user,
                max_connections,
                send_queue_size,
                send_queue_bytes,
                max_topics_per_connection,
            )
            < 1
        ):
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
        self.topic_authorizer = topic_authorizer
        self.authorizer_timeout = authorizer_timeout
        self.max_topics_per_connection = max_topics_per_connection
        self.require_topic = require_topic
        self.tracing = tracing
        self._registry = Registry()
        self._connections = self._registry.connections
        self._users = self._registry.users
        self._topics = self._registry.topics
        self._presence = TopicPresence(self.backplane, self._announce_presence, presence)
        self._node = Node(self.node_id, self.backplane, self._registry, self._presence.expired)
        self._history = make_history(
            history, history_policy, self._node, history_gap_timeout, send_queue_size
        )
        self._node.tracing, self._node.budget = tracing, self.send_budget
        self._cleanups: set[asyncio.Task[None]] = set()
        self._evicted = 0
        self._rejected = 0
        self.server_guard = ServerGuard()  # what the server negotiates, per connection

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

    # -- lifecycle ---------------------------------------------------------------------

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
        self._require_authorizer()
        await self._node.start()

    async def stop(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutdown") -> None:
        """Close every connection with ``code`` (concurrently), empty the registry and
        leave the deployment (this node's presence is removed; the ``presence.leave``
        events its users cause are sent first, within ``close_timeout``), then close the
        history store. Idempotent; never hangs (see ``stop_timeout``)."""
        connections = list(self._connections.values())
        await asyncio.gather(*(c.close(code, reason) for c in connections), return_exceptions=True)
        await bounded(self._finish_cleanups(), "topic cleanups", limit=self.stop_timeout)
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

    # -- registry ----------------------------------------------------------------------

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
        self._require_authorizer()
        if not self._node.running:
            await self._node.start()
        user = connection.user_key
        siblings = self._users.get(user, {})
        overflow = max(0, len(siblings) + 1 - self.max_per_user)
        if len(self._connections) - overflow >= self.max_connections:
            self._rejected += 1
            logger.warning(
                "connection %s rejected: %d connections held",
                connection.connection_id,
                len(self._connections),
            )
            raise CapacityError()
        first_of_user = self._registry.add(connection)
        connection.add_close_callback(self._discard)
        if first_of_user:
            await self._node.want(user_channel(user))
        self._evicted += await self._node.enforce_user_cap(connection, self.max_per_user)
        if connection.connection_id not in self._connections:  # it left meanwhile
            self.backplane.presence.leave(user, connection.connection_id)

    def get(self, connection_id: str) -> WebSocketConnection | None:
        """The live connection with this id in this process, or ``None``."""
        return self._connections.get(connection_id)

    def connections_of(self, user_id: UserId) -> list[WebSocketConnection]:
        """The user's live connections in this process, oldest first."""
        return list(self._users.get(str(user_id), {}).values())

    def stats(self) -> HubStats:
        """Counts of connections, users, topics and the delivery counters (this process)."""
        return HubStats(
            connections=len(self._connections),
            users=len(self._users),
            topics=len(self._topics),
            subscriptions=sum(len(m) for m in self._topics.values()),
            frames_queued=self._registry.frames_queued,
            slow_consumers_closed=self._registry.slow_closed + self.send_budget.stalled,
            evicted_over_user_cap=self._evicted,
            rejected_at_capacity=self._rejected,
        )

    def cluster_stats(self) -> ClusterStats:
        """This node's id, backplane state and cross-process counters."""
        return self._node.stats()

    # -- delivery ----------------------------------------------------------------------

    async def broadcast(
        self,
        envelope: EnvelopeLike,
        topic: Topic | None = None,
        *,
        exclude: str | Iterable[str] | None = None,
        exclude_users: UserId | Iterable[UserId] | None = None,
        everyone: bool = False,
        ephemeral: bool = False,
    ) -> int:
        """Send to everyone, or to ``topic``'s subscribers, on every node, minus the
        exclusions.

        ``exclude`` takes connection ids, ``exclude_users`` user ids (one or an iterable),
        applied on every node. Returns how many connections *of this process* it was
        queued for: other nodes deliver to theirs uncounted, so this is no delivery
        count (``0`` is normal where the topic's users are on other nodes). With
        ``require_topic=True`` a broadcast to everyone needs ``everyone=True``.

        On a topic that keeps history, the message is first appended (it gets its
        offset) and goes out stamped with its position; when the append fails it goes
        out unstamped (it cannot be replayed) and the call raises. ``ephemeral=True``
        delivers live only: never stored nor stamped, even there (typing indicators,
        receipts and presence events go out this way).

        Raises:
            ValueError: no ``topic`` on a ``require_topic`` hub, without ``everyone``.
            BackplaneError: the other nodes may not get it (local delivery happened), or
                the history store failed (delivery happened without a position).
        """
        if topic is None and self.require_topic and not everyone:
            raise ValueError("this hub requires a topic (pass everyone=True to reach all)")
        if not self._node.running:
            await self._node.start()
        frame = encode_envelope(envelope)
        skip_ids = id_set(exclude)
        skip_users = id_set(
            exclude_users if not isinstance(exclude_users, UserId) else [exclude_users]
        )
        trace = None if self.tracing is None else self.tracing.inject()
        history = self._history
        budget = self.send_budget
        if history is not None and topic is not None and not ephemeral and history.keeps(topic):
            delivered = await history.broadcast(topic, frame, skip_ids, skip_users, trace)
            if budget.pressure:
                await budget.relieve()
            return delivered
        op, target = (OP_ALL, "") if topic is None else (OP_TOPIC, topic)
        fan_out = self._registry.fan_out
        delivered = fan_out(self._registry.select(op, target, skip_ids, skip_users), frame)
        channel = ALL_CHANNEL if topic is None else topic_channel(topic)
        if self._node.reaches_others(channel):
            packet = encode_packet(
                self.node_id,
                op,
                target,
                frame,
                exclude=skip_ids,
                exclude_users=skip_users,
                trace=trace,
            )
            await self._node.publish(channel, packet)
        if budget.pressure:
            await budget.relieve()
        return delivered
