"""The subscribing side of the Redis backplane: one link that never dies.

A *session* opens the pub/sub connection(s) — one to the server, or one per primary of a
Redis Cluster, where channels are sharded (``SSUBSCRIBE``) — subscribes every wanted
channel, proves the subscriptions active with a ``PING`` barrier (Redis answers in
order), and then runs three tasks: a reader per connection, one writer that sends
subscribe/unsubscribe commands in call order (a run of one kind as one command, on plain
pub/sub), and a watchdog that probes a silent connection with ``PING`` every
``health_check_interval`` and declares it half-open when no ``PONG`` comes back within
``timeout``.

Any failure — server gone, ``CLIENT KILL TYPE pubsub``, a half-open socket, slots moved
to another node — ends the session: every connection is closed and, after a capped
exponential backoff with jitter, a new session resubscribes everything. Each change of
state is logged on ``tempest_ws.backplane``. redis-py's own reconnection is disabled
(``retries=0``) so that no outage is ever papered over silently: every recovery goes
through ``on_up(recovered=True)``, which makes the hub send ``resync`` to its clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from tempest_ws._bounded import STOP_TIMEOUT, bounded, cancel_tasks, lost_cancellation
from tempest_ws.client._backoff import Backoff
from tempest_ws.observe._audit import traffic_event

__all__ = ["PubSubLink", "describe"]

logger = logging.getLogger("tempest_ws.backplane")

OnMessage = Callable[[str, bytes], None]
OnUp = Callable[[bool], Awaitable[None]]
ClientFactory = Callable[..., Any]


class LinkLost(ConnectionError):
    """The session cannot go on (half-open link, topology change)."""


_EXPECTED = (RedisError, OSError, TimeoutError)
_MAX_RUN = 512  # channels in one SUBSCRIBE or UNSUBSCRIBE sent by the writer


def describe(exc: BaseException) -> str:
    """``Type: message`` (redis-py's ``repr`` hides the message)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(eq=False)
class _Shard:
    name: str
    client: Redis
    pubsub: PubSub
    last_rx: float = field(default_factory=time.monotonic)
    ping_sent: float | None = None
    pong: asyncio.Event = field(default_factory=asyncio.Event)


class _Session:
    """The connections of one attempt; closed as a whole."""

    def __init__(self, stop_timeout: float) -> None:
        self.stop_timeout = stop_timeout
        self.shards: dict[str, _Shard] = {}
        self.topology: RedisCluster | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.up = False

    async def close(self) -> None:
        """Stop the tasks and close every connection, each within ``stop_timeout`` (a
        step that outlasts it is abandoned and logged: redis-py's ``PubSub.aclose``
        cannot be cancelled)."""
        limit = self.stop_timeout
        await cancel_tasks(self.tasks, "redis pub/sub task", limit=limit)
        for shard in self.shards.values():
            with contextlib.suppress(Exception):
                # redis-py < 8.2 leaves PubSub.aclose unannotated; the cast types it for all.
                aclose = cast(Callable[[], Awaitable[None]], shard.pubsub.aclose)
                await bounded(aclose(), f"pub/sub connection to {shard.name}", limit=limit)
            with contextlib.suppress(Exception):
                await bounded(shard.client.aclose(), f"client of {shard.name}", limit=limit)
        if self.topology is not None:
            with contextlib.suppress(Exception):
                await bounded(self.topology.aclose(), "cluster topology client", limit=limit)


class PubSubLink:
    """Keeps the node subscribed to its wanted channels across every Redis fault.

    Args:
        open_client: builds a standalone client for ``(host, port)`` or, called with no
            argument, for the configured URL (no retries, no health check of its own).
        open_cluster: builds a cluster client for the configured URL, or ``None`` when
            not in cluster mode (then channels use plain ``SUBSCRIBE``).
        prefix: prepended (with ``:``) to every channel name.
        on_message: ``(channel, data)`` for each message, channel without the prefix.
        backpressure: called after each message; an awaitable it returns is awaited
            before the next message is read (the hub's local queues ran deep).
        on_up: awaited after every successful (re)subscription; ``True`` after an outage.
        stop_timeout: bound on each step of `stop()` (abandoned and logged past it).
    """

    def __init__(
        self,
        *,
        open_client: ClientFactory,
        open_cluster: Callable[[], RedisCluster] | None,
        prefix: str,
        timeout: float,
        health_check_interval: float,
        backoff: Backoff,
        on_message: OnMessage,
        on_up: OnUp,
        stop_timeout: float = STOP_TIMEOUT,
        backpressure: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        self._open_client = open_client
        self._open_cluster = open_cluster
        self._sharded = open_cluster is not None
        self._prefix = prefix + ":"
        self._timeout = timeout
        self._interval = health_check_interval
        self._backoff = backoff
        self._on_message = on_message
        self._backpressure = backpressure
        self._on_up = on_up
        self._stop_timeout = stop_timeout
        self.wanted: set[str] = set()
        self.connected = False
        self.outages = 0
        self._session: _Session | None = None
        self._commands: deque[tuple[bool, str]] = deque()
        self._has_commands = asyncio.Event()
        self._confirmations: dict[str, deque[asyncio.Future[None]]] = {}
        self._unsubscribing: Counter[str] = Counter()
        self._up = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- public ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the link task (owned by this object until `stop()`)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="tempest_ws redis link")

    async def wait_up(self, limit: float) -> bool:
        """Wait up to ``limit`` seconds for the first session; return whether it is up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._up.wait()
        return self.connected

    async def stop(self) -> None:
        """Stop the link task and close every connection. Idempotent.

        Bounded: the task (which closes the session's connections, each within
        ``stop_timeout``) gets three times ``stop_timeout``, then it is abandoned and
        logged."""
        self._stopping.set()
        task, self._task = self._task, None
        await cancel_tasks([task], "redis pub/sub link", limit=3 * self._stop_timeout)
        self._settle_confirmations()

    async def subscribe(self, channel: str) -> None:
        """Want ``channel``; wait (bounded) for Redis to confirm it when connected."""
        self.wanted.add(channel)
        if self._session is None:
            return  # between sessions: the next one subscribes every wanted channel
        if not self.connected:  # a session is subscribing: its writer sends this later
            self._commands.append((True, channel))
            self._has_commands.set()
            return
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, deque()).append(confirmed)
        self._commands.append((True, channel))
        self._has_commands.set()
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(confirmed)
        except TimeoutError:
            logger.warning("subscription to %s not confirmed within %.1fs", channel, self._timeout)

    def unsubscribe(self, channel: str) -> None:
        """Stop wanting ``channel``."""
        self.wanted.discard(channel)
        if self._session is not None:
            self._commands.append((False, channel))
            self._has_commands.set()

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        delays = self._backoff.delays()
        down_since: float | None = None
        while not self._stopping.is_set():
            session = _Session(self._stop_timeout)
            self._session = session
            try:
                await self._serve(session, recovered=down_since is not None, since=down_since)
            except _EXPECTED as exc:
                if self.connected or down_since is None:
                    self.outages += 1
                    down_since = time.monotonic()
                    logger.warning("redis pub/sub link down (%s); reconnecting", describe(exc))
                else:
                    logger.info("redis still unreachable (%s)", describe(exc))
            except Exception:  # the task boundary: a bug must not end the link for good
                if self.connected or down_since is None:
                    self.outages += 1
                    down_since = time.monotonic()
                logger.exception("redis pub/sub link failed; reconnecting")
            else:
                return
            finally:
                self.connected = False
                self._settle_confirmations()
                await session.close()
                self._session = None
            if session.up:
                delays = self._backoff.delays()
            delay = next(delays)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def _serve(self, session: _Session, *, recovered: bool, since: float | None) -> None:
        async with asyncio.timeout(self._timeout * 2):
            await self._open(session)
        self._commands.clear()
        self._unsubscribing.clear()
        for shard in session.shards.values():
            session.tasks.append(asyncio.create_task(self._read(shard)))
        for start in range(0, len(wanted := sorted(self.wanted)), _MAX_RUN):
            await self._send(session, True, wanted[start : start + _MAX_RUN])
        async with asyncio.timeout(self._timeout * 2):
            await self._barrier(session)
        session.up = self.connected = True
        self._up.set()
        if recovered and since is not None:
            traffic_event("backplane_reconnected")
            logger.warning(
                "redis pub/sub link recovered after %.1fs; %d channels resubscribed",
                time.monotonic() - since,
                len(self.wanted),
            )
        else:
            logger.info("redis pub/sub link up (%d channels)", len(self.wanted))
        await self._on_up(recovered)
        session.tasks.append(asyncio.create_task(self._write(session)))
        session.tasks.append(asyncio.create_task(self._watch(session)))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait(
                [*session.tasks, stopping], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
        for task in done:
            if task is not stopping:
                task.result()  # raises the failure
                raise LinkLost("a link task ended")

    async def _open(self, session: _Session) -> None:
        if self._open_cluster is None:
            client = self._open_client()
            pubsub = client.pubsub()
            session.shards["redis"] = _Shard("redis", client, pubsub)
            await pubsub.connect()
            return
        session.topology = topology = self._open_cluster()
        await topology.initialize()
        for node in topology.get_primaries():
            client = self._open_client(node.host, node.port)
            pubsub = client.pubsub()
            session.shards[node.name] = _Shard(node.name, client, pubsub)
            await pubsub.connect()

    def _shard_for(self, session: _Session, channel: str) -> _Shard:
        if session.topology is None:
            return next(iter(session.shards.values()))
        node = session.topology.get_node_from_key(channel)
        shard = session.shards.get(node.name) if node is not None else None
        if shard is None:
            raise LinkLost(f"cluster topology changed (no connection to {node})")
        return shard

    async def _send(self, session: _Session, subscribe: bool, channels: list[str]) -> None:
        """One command for all ``channels``; one each if sharded (one hash slot each)."""
        if not subscribe:
            self._unsubscribing.update(channels)
        for part in [[c] for c in channels] if self._sharded else [channels]:
            full = [self._prefix + channel for channel in part]
            verb = ("s" if self._sharded else "") + ("subscribe" if subscribe else "unsubscribe")
            await getattr(self._shard_for(session, full[0]).pubsub, verb)(*full)

    async def _barrier(self, session: _Session) -> None:
        """PING every connection; the PONGs prove every earlier SUBSCRIBE is active."""
        for shard in session.shards.values():
            shard.pong.clear()
            shard.ping_sent = time.monotonic()
            await shard.pubsub.ping("tempest_ws")
        for shard in session.shards.values():
            await shard.pong.wait()

    async def _read(self, shard: _Shard) -> None:
        prefix = self._prefix
        while True:
            lost_cancellation()
            message = await shard.pubsub.get_message(timeout=None)
            shard.last_rx = time.monotonic()
            if message is None:
                continue
            kind = message["type"]
            if kind in ("message", "smessage"):
                channel = message["channel"].decode()
                if channel.startswith(prefix):
                    try:
                        self._on_message(channel[len(prefix) :], message["data"])
                    except Exception:  # a listener's bug must not stop the link
                        logger.exception("backplane listener failed on %s", channel)
                    pending = None if self._backpressure is None else self._backpressure()
                    if pending is not None:
                        await pending
            elif kind == "pong":
                shard.ping_sent = None
                shard.pong.set()
            elif kind in ("subscribe", "ssubscribe"):
                self._confirm(message["channel"].decode()[len(prefix) :])
            elif kind in ("unsubscribe", "sunsubscribe"):
                self._unsubscribed(message["channel"].decode()[len(prefix) :])

    def _confirm(self, channel: str) -> None:
        waiting = self._confirmations.get(channel)
        if waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_result(None)
            if not waiting:
                del self._confirmations[channel]

    def _unsubscribed(self, channel: str) -> None:
        if self._unsubscribing[channel] > 0:
            self._unsubscribing[channel] -= 1
            if not self._unsubscribing[channel]:
                del self._unsubscribing[channel]
        elif channel in self.wanted:  # Redis dropped it: its slot moved to another node
            raise LinkLost(f"redis unsubscribed {channel!r} (slot migrated?)")

    def _settle_confirmations(self) -> None:
        # Waiters are released, not failed: the channel stays wanted and is subscribed
        # again by the next session, which sends resync.
        for waiting in self._confirmations.values():
            for future in waiting:
                if not future.done():
                    future.set_result(None)
        self._confirmations.clear()

    async def _write(self, session: _Session) -> None:
        while True:
            lost_cancellation()
            await self._has_commands.wait()
            self._has_commands.clear()
            commands = self._commands
            while commands:
                subscribe, channel = commands.popleft()
                run = [channel]  # the run of one kind at the head, in order
                while commands and commands[0][0] == subscribe and len(run) < _MAX_RUN:
                    run.append(commands.popleft()[1])
                await self._send(session, subscribe, run)

    async def _watch(self, session: _Session) -> None:
        tick = min(self._interval, self._timeout) / 4
        while True:
            lost_cancellation()
            await asyncio.sleep(tick)
            now = time.monotonic()
            for shard in session.shards.values():
                if shard.ping_sent is not None:
                    if now - shard.ping_sent > self._timeout:
                        raise LinkLost(
                            f"no PONG from {shard.name} within {self._timeout:.1f}s (half-open)"
                        )
                elif now - shard.last_rx >= self._interval:
                    shard.ping_sent = now
                    await shard.pubsub.ping("tempest_ws")
