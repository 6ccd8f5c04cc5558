"""``RedisHistory``: topic history in Redis Streams, shared by every node of a deployment.

Needs the ``redis`` extra (``pip install 'redis>=8.1'``); importing this module
without it raises [`MissingDependencyError`][tempest_ws.exceptions.MissingDependencyError].
Needs Redis 6.2 or later (``XTRIM MINID``).

Two keys per topic (``P`` is the key prefix; the ``{t:...}`` hash tag puts both in one
slot, so the scripts below run unchanged on Redis Cluster):

``P:history:{t:<topic>}:m``  HASH ``e`` = epoch, ``o`` = last offset, ``r`` = when the
                             next renewal is due; expires ``meta_ttl`` (plus at most a
                             second) after its last use
``P:history:{t:<topic>}:s``  STREAM of ``o`` = offset, ``f`` = frame; ``MAXLEN ~``
                             ``max_messages`` on every append, ``MINID ~`` now -
                             ``max_age`` on appends at most once a second;
                             expires after ``max_age`` without appends

Each operation is one Lua script, so it is atomic across nodes: an append increments the
offset and adds the stream entry together (offsets and stream order agree, and the
entries after offset ``n`` are the last ``latest - n`` of the stream); a read sees one
consistent state. **Data loss is detected, not guessed**: when the hash is missing (a
restart without persistence, ``FLUSHALL``, failover to a replica that had not got it,
eviction, expiry), the next script to touch the topic drops the stream and starts a new
epoch (Redis's clock in µs, then random digits the store drew when it was made), so
every position handed out before is answered ``recovered=False``. Stream ids are Redis's
clock, so age trimming and the age check on reads never depend on a node's clock.

Appends are pipelined ([`_redis_appends`][tempest_ws.history._redis_appends]): one task sends
whatever accumulated while the previous batch was in flight, in call order, so one node's
appends take offsets in the order they were called and cost one round trip per batch;
consecutive appends of a batch to one topic share one script call.
(On Redis Cluster each append is sent on its own: cluster pipelines may retry a whole
batch.) `RedisHistory.append_publish()` also publishes the stamped packet from the
same script, for a [`RedisBackplane`][tempest_ws.backplane.RedisBackplane] on the same standalone
server (`RedisHistory.joined_with()`).

Every batch and read is bounded by ``timeout`` and raises
[`BackplaneError`][tempest_ws.exceptions.BackplaneError] on failure (a failed batch fails every
append waiting, at once). Appends are never retried (a retried append could store the
message twice); reads are retried once after a dropped connection (the first command
after a Redis restart meets a dead pooled connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Sequence
from typing import Any, Self, cast

from tempest_ws._bounded import STOP_TIMEOUT, bounded
from tempest_ws.exceptions import BackplaneError, ConfigurationError, MissingDependencyError

try:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
except ImportError:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError("redis", "redis") from None

from tempest_ws.backplane._redis_settings import redis_settings
from tempest_ws.history._redis_appends import (
    Append,
    AppendQueue,
    appended,
    describe,
    position_of,
    positions,
    runs,
)
from tempest_ws.history._redis_calls import ScriptCalls
from tempest_ws.history._redis_joint import joint
from tempest_ws.history._redis_scripts import APPEND, READ, SHA
from tempest_ws.history.base import (
    AppendPublish,
    Entry,
    HistoryPage,
    Position,
    Recovery,
    check_limit,
    check_offset,
    check_topic,
)
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.history.wire import stamp_parts
from tempest_ws.settings import WebSocketSettings

__all__ = ["RedisHistory"]

logger = logging.getLogger("tempest_ws.history")

_ERRORS = (RedisError, OSError, TimeoutError)
_APPEND_SHA = SHA[APPEND].encode()
_WIDTHS = {1: b"1", 4: b"4"}  # the append script's arguments per message
_RENEWAL_MS = 1000  # at most this long between two renewals of a topic's meta hash


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisHistory:
    """A [`HistoryStore`][tempest_ws.history.HistoryStore] on Redis Streams.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` or ``unix://``;
            with ``cluster=True``, any node of the cluster.
        policy: the bounds (``max_messages``, ``max_age``, ``meta_ttl``).
        cluster: use Redis Cluster routing (each topic's keys live on one shard).
        prefix: prefix of every key (the backplane's channel prefix, normally).
        timeout: bound on connecting and on each operation, in seconds.
        health_check_interval: pooled connections idle that long are checked first.
        max_pending: appends waiting for Redis before another raises at once.

    Raises:
        ConfigurationError: a bound is not positive, the prefix is empty or holds
            whitespace or braces, or the URL scheme is unknown.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        policy: HistoryPolicy | None = None,
        cluster: bool = False,
        prefix: str = "tempest_ws",
        timeout: float = 2.0,
        health_check_interval: float = 5.0,
        max_pending: int = 10_000,
    ) -> None:
        if not timeout > 0 or not health_check_interval > 0 or max_pending < 1:
            raise ConfigurationError("RedisHistory bounds must be positive")
        if not prefix or any(c.isspace() or c in "{}" for c in prefix):
            raise ConfigurationError("prefix must be non-empty, without whitespace or braces")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError("the Redis URL must start with redis://, rediss:// or unix://")
        self.url = url
        self.policy = policy or HistoryPolicy()
        self.cluster = cluster
        self.prefix = prefix
        self.timeout = timeout
        self.health_check_interval = health_check_interval
        self._client: Redis | RedisCluster | None = None
        self._initializing = asyncio.Lock()
        self._initialized = False
        self.max_pending = max_pending
        self._calls = ScriptCalls(APPEND, _APPEND_SHA)
        self._appends = AppendQueue(
            self._send, timeout=timeout, max_pending=max_pending, errors=_ERRORS
        )
        max_age_ms = _ms(self.policy.max_age)
        # Appends renew the meta hash's expiry (and trim by age) once per period; the
        # hash gets the period on top of meta_ttl, so it outlives its last use by that.
        renewal = min(_RENEWAL_MS, max(1, max_age_ms // 16))
        self._max_age_ms = str(max_age_ms)
        self._meta_ttl_ms = str(_ms(self.policy.meta_ttl) + renewal)
        # The epoch suffix is drawn once: epochs of one topic differ by Redis's clock.
        self._suffix = secrets.token_hex(4)
        self._constants = (
            f"{self._suffix} {self.policy.max_messages} {self._max_age_ms} "
            f"{self._meta_ttl_ms} {renewal}"
        ).encode()

    @classmethod
    def from_settings(cls, settings: WebSocketSettings) -> Self:
        """The store ``WS_REDIS_*`` and ``WS_HISTORY_*`` describe (``WS_REDIS_URL`` set).

        Raises:
            ConfigurationError: ``WS_REDIS_URL`` is not set.
        """
        shared = redis_settings(settings)
        return cls(
            shared.url,
            policy=HistoryPolicy.from_settings(settings),
            cluster=shared.cluster,
            prefix=shared.prefix,
            timeout=shared.timeout,
            health_check_interval=shared.health_check_interval,
            max_pending=shared.max_pending,
        )

    def __repr__(self) -> str:  # never shows the URL: it may hold a password
        mode = "cluster" if self.cluster else "standalone"
        return f"<RedisHistory {mode} prefix={self.prefix!r}>"

    def keys(self, topic: str) -> tuple[str, str]:
        """The Redis keys of ``topic``: (meta hash, stream)."""
        base = f"{self.prefix}:history:{{t:{topic}}}"
        return f"{base}:m", f"{base}:s"

    # -- plumbing ----------------------------------------------------------------------

    def _require(self) -> Redis | RedisCluster:
        if self._client is None:
            options: dict[str, Any] = {
                "socket_connect_timeout": self.timeout,
                "socket_timeout": self.timeout,
                "socket_keepalive": True,
                "retry": Retry(NoBackoff(), 0),  # an append retried could be stored twice
                "health_check_interval": self.health_check_interval,
                "protocol": 2,
            }
            factory = RedisCluster.from_url if self.cluster else Redis.from_url
            self._client = factory(self.url, **options)
        return self._client

    async def _script(
        self, script: str, keys: tuple[str | bytes, str | bytes], args: Sequence[str | bytes]
    ) -> Any:
        client = self._require()
        # self.cluster first: isinstance of a RedisCluster costs microseconds.
        if self.cluster and not self._initialized and isinstance(client, RedisCluster):
            # Commands racing a fresh cluster client's lazy start can fail with
            # "Connection closed by server" when retries are off: start it once first.
            async with self._initializing:
                if not self._initialized:
                    await client.initialize()
                    self._initialized = True
        try:
            return await client.execute_command("EVALSHA", SHA[script], 2, *keys, *args)
        except NoScriptError:  # first use on this server, or it restarted
            return await client.execute_command("EVAL", script, 2, *keys, *args)

    async def _run(
        self, what: str, script: str, topic: str, args: Sequence[str | bytes], *, retry: bool
    ) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    return await self._script(script, self.keys(topic), args)
                except RedisConnectionError:
                    if not retry:
                        raise
                return await self._script(script, self.keys(topic), args)
        except _ERRORS as exc:
            raise BackplaneError(f"redis history {what} failed ({describe(exc)})") from exc

    async def _read(
        self, topic: str, *, after: int, limit: int, strict: bool, epoch: str = ""
    ) -> tuple[Position, list[Entry]]:
        args = [
            self._suffix,
            self._meta_ttl_ms,
            self._max_age_ms,
            str(after),
            str(limit),
            "1" if strict else "0",
            epoch,
        ]
        raw = await self._run("read", READ, topic, args, retry=True)
        position = position_of(raw)
        entries = [
            Entry(int(raw[i]), raw[i + 1].decode("utf-8")) for i in range(2, len(raw) - 1, 2)
        ]
        return position, entries

    # -- HistoryStore ------------------------------------------------------------------

    async def append(self, topic: str, frame: str) -> Position:
        """Queue ``frame`` for the next pipelined batch; return its position.

        One script per append increments the offset, adds the stream entry and trims.

        Raises:
            BackplaneError: ``max_pending`` appends already waiting, or Redis failed or did
                not answer within ``timeout``; the frame may have been stored (never
                twice). A caller cancelled before its batch is sent is never stored.
        """
        return await self._append(topic, frame, ())

    async def append_publish(self, topic: str, frame: str, channel: str, head: str) -> Position:
        """`append()`, and in the same script ``PUBLISH`` on Redis channel ``channel``
        the packet ``head`` + position + newline + stamped frame; return the position.

        ``head`` is a packet header cut before its position
        (`positioned_head()`); the packet is then
        byte for byte what ``encode_packet`` gives with the position and the frame
        stamped by `stamp_frame()`. One round trip, and
        subscribers of ``channel`` get the topic's messages in offset order. Standalone
        Redis only (on a cluster the channel and the keys live on different shards).

        Raises:
            ConfigurationError: the store is a cluster store.
            ValueError: ``frame`` is not a serialized JSON object.
            BackplaneError: as `append()`; the packet is published exactly when the
                message is stored.
        """
        if self.cluster:
            raise ConfigurationError("append_publish needs standalone Redis")
        drop, middle = stamp_parts(frame, topic)
        publish = (channel.encode(), head.encode(), f"{frame[:-drop]}{middle}".encode())
        return await self._append(topic, frame, publish)

    def joined_with(self, backplane: object) -> AppendPublish | None:
        """An `AppendPublish` for ``backplane`` when it is a
        standalone [`RedisBackplane`][tempest_ws.backplane.RedisBackplane] on this store's URL (the
        same server), else ``None``; the hub then appends and publishes in one round trip.
        """
        from tempest_ws.backplane.redis import RedisBackplane

        if (
            not isinstance(backplane, RedisBackplane)
            or backplane.cluster
            or self.cluster
            or backplane.url != self.url
        ):
            return None
        return joint(self._appends.append, self._keys, backplane.redis_channel, self.append_publish)

    async def _append(self, topic: str, frame: str, publish: tuple[bytes, ...]) -> Position:
        check_topic(topic)
        if not isinstance(frame, str):
            raise TypeError("frame must be a str")
        fields = [frame.encode(), *publish]
        if self.cluster:
            args = [self._constants, _WIDTHS[len(fields)], *fields]
            return appended(await self._run("append", APPEND, topic, args, retry=False))
        # Arguments go as bytes: the client packs them without encoding each again.
        return await self._appends.append(self._keys(topic), fields)

    def _keys(self, topic: str) -> tuple[bytes, bytes]:
        base = f"{self.prefix}:history:{{t:{topic}}}".encode()
        return base + b":m", base + b":s"

    async def _send(self, batch: list[Append]) -> list[Position | Exception]:
        """One script call per run of appends to one topic, pipelined; one position (or
        the error of its call) per append."""
        if len(batch) == 1:  # a sequential publisher's case: no runs to cut
            keys, fields, _ = batch[0]
            calls = [(keys, [self._constants, _WIDTHS[len(fields)], *fields], 1)]
        else:
            calls = [
                (keys, [self._constants, _WIDTHS[len(args) // count], *args], count)
                for keys, args, count in runs(batch)
            ]
        client = cast(Redis, self._require())  # appends are queued on standalone Redis only
        replies = await self._calls.call(client, [(keys, args) for keys, args, _ in calls])
        out: list[Position | Exception] = []
        for (_, _, count), reply in zip(calls, replies, strict=True):
            out += [reply] * count if isinstance(reply, Exception) else positions(reply, count)
        return out

    async def since(self, topic: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        """One ``XREVRANGE`` of the last ``latest - offset`` entries, all or nothing."""
        check_topic(topic)
        check_offset(offset)
        check_limit(limit)
        position, entries = await self._read(
            topic, after=offset, limit=limit, strict=True, epoch=epoch
        )
        missed = position.offset - offset
        complete = (
            position.epoch == epoch
            and 0 <= missed <= limit
            and len(entries) == missed
            and (missed == 0 or entries[0].offset == offset + 1)
        )
        if not complete:
            return Recovery((), False, position)
        return Recovery(tuple(entries), True, position)

    async def latest(self, topic: str) -> Position:
        """The topic's latest position; starts its epoch if it has none."""
        check_topic(topic)
        position, _ = await self._read(topic, after=-1, limit=0, strict=False)
        return position

    async def history(self, topic: str, *, since: int | None = None, limit: int) -> HistoryPage:
        """The newest ``limit`` entries, or the oldest ``limit`` held after ``since``."""
        check_topic(topic)
        check_limit(limit)
        if since is not None:
            check_offset(since)
        after = -1 if since is None else since
        position, entries = await self._read(topic, after=after, limit=limit, strict=False)
        return HistoryPage(tuple(entries), position)

    async def aclose(self) -> None:
        """Fail waiting appends, close the connection pool. Idempotent; a later call
        opens a new one. Each step gets ``STOP_TIMEOUT`` seconds (then it is abandoned,
        logged on ``tempest_ws.shutdown``)."""
        await self._appends.aclose(BackplaneError("redis history closed"))
        self._calls.forget()
        client, self._client = self._client, None
        self._initialized = False
        if client is not None:
            with contextlib.suppress(*_ERRORS):
                await bounded(client.aclose(), "redis history connections", limit=STOP_TIMEOUT)
