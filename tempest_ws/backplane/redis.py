"""``RedisBackplane``: the hubs of many processes and machines, joined by Redis pub/sub.

Needs the ``redis`` extra (``pip install 'redis>=8.1'``); importing this module
without it raises [`MissingDependencyError`][tempest_ws.exceptions.MissingDependencyError].

Three parts, each with one job:

* publishing (``_redis_publish``): packets reach Redis in call order, pipelined when
  they come faster than Redis answers. Each packet is one ``PUBLISH`` (``SPUBLISH`` on a
  cluster) and is never retried, so a failure is an error to the caller
  ([`BackplaneError`][tempest_ws.exceptions.BackplaneError]), never a duplicate;
* subscribing (``_redis_link``): a link that reconnects with capped exponential backoff
  and jitter, resubscribes everything and reports each recovery (the hub sends
  ``resync``);
* presence (``_redis_presence``, ``_redis_topics``): the cluster-wide registry behind
  ``online_users``, the per-user cap and topic presence.

Every operation is bounded by ``timeout``; none of them waits for Redis to come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Self

from tempest_ws.exceptions import BackplaneError, ConfigurationError, MissingDependencyError

try:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import parse_url
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError("redis", "redis") from None

from tempest_ws._bounded import STOP_TIMEOUT, bounded, check_stop_timeout
from tempest_ws.backplane._redis_link import PubSubLink, describe
from tempest_ws.backplane._redis_presence import RedisPresence
from tempest_ws.backplane._redis_publish import ERRORS as _ERRORS
from tempest_ws.backplane._redis_publish import Publishing
from tempest_ws.backplane._redis_settings import redis_settings
from tempest_ws.backplane.base import BackplaneListener
from tempest_ws.client._backoff import Backoff
from tempest_ws.settings import WebSocketSettings

__all__ = ["RedisBackplane"]

logger = logging.getLogger("tempest_ws.backplane")


class RedisBackplane:
    """A [`Backplane`][tempest_ws.backplane.base.Backplane] on Redis pub/sub.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` or ``unix://``; with
            ``cluster=True``, any node of the cluster.
        cluster: use Redis Cluster routing and sharded pub/sub (``SSUBSCRIBE`` /
            ``SPUBLISH``): each channel lives on the shard owning its hash slot.
        channel_prefix: prefix of every channel and key (``<prefix>:topic:<name>``...).
        timeout: bound on connecting and on each command, in seconds.
        health_check_interval: silence on a pub/sub connection after which it is probed
            with ``PING``; a ``PONG`` missing for ``timeout`` means a half-open link.
            Pooled command connections idle that long are checked before use.
        reconnect_max: cap of the reconnection backoff, in seconds.
        presence_ttl: a node silent this long is dead (its connections stop counting).
        max_pending: publishes queued before ``publish`` raises at once.
        stop_timeout: bound on each step of `stop()` (a task, a connection); a step
            that outlasts it is abandoned and logged on ``tempest_ws.shutdown``.

    Raises:
        ConfigurationError: a bound is not positive or the URL scheme is unknown.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        cluster: bool = False,
        channel_prefix: str = "tempest_ws",
        timeout: float = 2.0,
        health_check_interval: float = 5.0,
        reconnect_max: float = 5.0,
        presence_ttl: float = 30.0,
        max_pending: int = 10_000,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        if min(timeout, health_check_interval, reconnect_max, presence_ttl) <= 0:
            raise ConfigurationError("RedisBackplane durations must be positive")
        if max_pending < 1 or not channel_prefix:
            raise ConfigurationError("max_pending must be >= 1 and channel_prefix non-empty")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError("the Redis URL must start with redis://, rediss:// or unix://")
        self.url = url
        self.cluster = cluster
        self.channel_prefix = channel_prefix
        self.timeout = timeout
        self.health_check_interval = health_check_interval
        self.reconnect_max = reconnect_max
        self.max_pending = max_pending
        self.stop_timeout = check_stop_timeout(stop_timeout)
        self._presence = RedisPresence(
            prefix=channel_prefix, ttl=presence_ttl, timeout=timeout, stop_timeout=stop_timeout
        )
        self._client: Redis | RedisCluster | None = None
        self._link: PubSubLink | None = None
        self._listener: BackplaneListener | None = None
        self._publishing: Publishing | None = None
        self._cluster_ready = False

    @classmethod
    def from_settings(cls, settings: WebSocketSettings) -> Self:
        """The backplane ``WS_REDIS_*`` describe (``WS_REDIS_URL`` must be set).

        Raises:
            ConfigurationError: ``WS_REDIS_URL`` is not set.
        """
        shared = redis_settings(settings)
        return cls(
            shared.url,
            cluster=shared.cluster,
            channel_prefix=shared.prefix,
            timeout=shared.timeout,
            health_check_interval=shared.health_check_interval,
            reconnect_max=settings.WS_REDIS_RECONNECT_MAX_SECONDS,
            presence_ttl=settings.WS_REDIS_PRESENCE_TTL_SECONDS,
            max_pending=shared.max_pending,
        )

    def __repr__(self) -> str:  # never shows the URL: it may hold a password
        mode = "cluster" if self.cluster else "standalone"
        return f"<RedisBackplane {mode} prefix={self.channel_prefix!r}>"

    # -- clients -----------------------------------------------------------------------

    def _options(self, *, pubsub: bool) -> dict[str, Any]:
        return {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
            "socket_keepalive": True,
            # Never retried: a retried PUBLISH could be a duplicate, and a silently
            # reconnected subscriber would hide the outage from the clients.
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0 if pubsub else self.health_check_interval,
            "protocol": 2,
        }

    def _open_client(self, host: str | None = None, port: int | None = None) -> Redis:
        if host is None:
            return Redis.from_url(self.url, **self._options(pubsub=True))
        options: dict[str, Any] = {**parse_url(self.url), **self._options(pubsub=True)}
        for taken in ("host", "port", "path", "connection_class"):
            options.pop(taken, None)
        return Redis(host=host, port=port or 6379, **options)

    def _open_cluster(self) -> RedisCluster:
        return RedisCluster.from_url(self.url, **self._options(pubsub=False))

    # -- Backplane ---------------------------------------------------------------------

    @property
    def presence(self) -> RedisPresence:
        """Cluster-wide presence kept in Redis."""
        return self._presence

    @property
    def connected(self) -> bool:
        """Whether the pub/sub link is up (every wanted channel subscribed)."""
        return self._link is not None and self._link.connected

    async def start(self, node_id: str, listener: BackplaneListener) -> None:
        """Connect and subscribe; wait at most ``2 * timeout`` for Redis.

        An unreachable Redis is logged, not raised: the link keeps trying in the
        background and the listener's ``on_resync`` runs once it gets through.
        """
        if self._link is not None:
            return
        self._listener = listener
        if self.cluster:
            self._client = self._open_cluster()
            await self._initialize_cluster()
        else:
            self._client = Redis.from_url(self.url, **self._options(pubsub=False))
        self._link = PubSubLink(
            open_client=self._open_client,
            open_cluster=self._open_cluster if self.cluster else None,
            prefix=self.channel_prefix,
            timeout=self.timeout,
            health_check_interval=self.health_check_interval,
            backoff=Backoff(min_delay=min(0.05, self.reconnect_max), max_delay=self.reconnect_max),
            on_message=listener.on_packet,
            backpressure=getattr(listener, "backpressure", None),  # optional in the protocol
            on_up=self._on_up,
            stop_timeout=self.stop_timeout,
        )
        self._presence.start(
            self._client,
            node_id,
            lambda: self.connected,
            # Looked up when a dead node is reaped, not now: a listener written before
            # topic presence existed still starts (its reaping failure is logged).
            lambda topic, user: listener.on_presence_expired(topic, user),
        )
        self._publishing = Publishing(
            self._client, timeout=self.timeout, max_pending=self.max_pending
        )
        self._link.start()
        if not await self._link.wait_up(self.timeout * 2):
            logger.warning("redis not reachable yet; node %s keeps trying", node_id)

    async def _initialize_cluster(self) -> None:
        """Load the slot map of a fresh cluster client once, within ``timeout``.

        With retries off, commands racing a cluster client's lazy start fail with
        "Connection closed by server"; loading it first, before anything else uses the
        client, avoids that. An unreachable cluster is logged here and tried again when
        the pub/sub link comes up.
        """
        client = self._client
        if not isinstance(client, RedisCluster) or self._cluster_ready:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await client.initialize()
        except _ERRORS as exc:
            logger.warning("redis cluster slot map not loaded yet (%s)", describe(exc))
            return
        self._cluster_ready = True

    async def _on_up(self, recovered: bool) -> None:
        await self._initialize_cluster()
        self._presence.recovered()
        if recovered and self._listener is not None:
            try:
                self._listener.on_resync()
            except Exception:  # the listener's bug must not take the link down again
                logger.exception("backplane listener failed on resync")

    async def stop(self) -> None:
        """Remove this node's presence, stop every task, close every connection.

        Never hangs: each step is bounded by ``stop_timeout`` and one that outlasts it is
        abandoned with a WARNING naming it (Redis frozen, a connection that will not
        close)."""
        if self._link is None:
            return
        limit = self.stop_timeout
        await bounded(self._presence.stop(), "redis presence stop", limit=limit)
        link, self._link = self._link, None
        await link.stop()
        publishing, self._publishing = self._publishing, None
        if publishing is not None:
            await publishing.stop(limit)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*_ERRORS):
                await bounded(client.aclose(), "redis command connections", limit=limit)
        self._cluster_ready = False
        self._listener = None

    async def publish(self, channel: str, packet: bytes) -> int:
        """Publish ``packet`` on ``channel``; return the subscriber count.

        Raises:
            BackplaneError: not started, ``max_pending`` packets already waiting, or Redis
                failed or did not answer within ``2 * timeout`` (the packet may be lost,
                it is never sent twice).
        """
        if self._publishing is None:
            raise BackplaneError("redis backplane is not started")
        return await self._publishing.publish(self.redis_channel(channel), packet)

    def redis_channel(self, channel: str) -> str:
        """The Redis channel a logical ``channel`` is published on (the prefix added)."""
        return f"{self.channel_prefix}:{channel}"

    async def subscribe(self, channel: str) -> None:
        """Subscribe (confirmed by Redis, or recorded for the next connection)."""
        if self._link is None:
            raise BackplaneError("redis backplane is not started")
        await self._link.subscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        """Unsubscribe (sent in order with subscriptions)."""
        if self._link is not None:
            self._link.unsubscribe(channel)
