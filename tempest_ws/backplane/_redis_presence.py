"""Cluster-wide presence in Redis: who is online, and each user's connections by age.

Keys (``P`` is the channel prefix; every command touches one key, so it works unchanged
on Redis Cluster):

``P:nodes:all``        ZSET node id -> last heartbeat (Redis server time, ms)
``P:presence:<user>``  ZSET ``<node>/<connection id>`` -> connection time (µs)
``P:nodeusers:<node>`` SET of users with a connection on that node

plus the topic presence keys of [`_redis_topics`][tempest_ws.backplane._redis_topics].

``online_users`` and ``is_online`` read the sets of the live nodes (each node keeps its
own set from what it actually holds). ``join`` runs one Lua script on the user's key:
drop members of nodes known dead, add the newcomer, remove and return the oldest past the
cap (never the newcomer). Joins and leaves are applied by one task, in call order, a
run of up to ``MAX_BATCH`` of them per pipeline (one round trip), so a node that lost
thousands of connections at once removes them in a few dozen round trips and the
newcomers queued behind them are not held for thousands.

Each node refreshes its heartbeat every third of the TTL; a node silent for longer is
dead: its members stop counting at once and the first live node to notice scrubs them
(and reports who left a topic thereby). This node's own members are kept in memory and
written again after any outage (Redis may have restarted empty), or when it finds itself
missing from the node list (it was taken for dead during a long pause).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from tempest_ws._bounded import STOP_TIMEOUT, bounded, cancel_tasks, lost_cancellation
from tempest_ws.backplane._redis_link import describe
from tempest_ws.backplane._redis_topics import RedisTopicPresence
from tempest_ws.backplane._serial_ops import SerialOps
from tempest_ws.backplane.base import Member
from tempest_ws.exceptions import BackplaneError

__all__ = ["MAX_BATCH", "RedisPresence"]

logger = logging.getLogger("tempest_ws.backplane")

Client = Redis | RedisCluster

_JOIN = """
local key, member = KEYS[1], ARGV[1]
if ARGV[4] ~= '' then
  local dead = {}
  for node in string.gmatch(ARGV[4], '[^,]+') do dead[node] = true end
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local node = string.match(m, '^([^/]+)/')
    if node and dead[node] then redis.call('ZREM', key, m) end
  end
end
redis.call('ZADD', key, ARGV[2], member)
local over = redis.call('ZCARD', key) - tonumber(ARGV[3])
local evicted = {}
if over > 0 then
  for _, m in ipairs(redis.call('ZRANGE', key, 0, over)) do
    if m ~= member and #evicted < over then evicted[#evicted + 1] = m end
  end
  if #evicted > 0 then redis.call('ZREM', key, unpack(evicted)) end
end
return evicted
"""

_NODES = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local known = 1
if ARGV[1] ~= '' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then known = 0 end
  redis.call('ZADD', KEYS[1], ms, ARGV[1])
end
local out = {tostring(ms), known}
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries do out[#out + 1] = entries[i] end
return out
"""

_SCRUB = """
local prefix = ARGV[1] .. '/'
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #prefix) == prefix then redis.call('ZREM', KEYS[1], m) end
end
return 0
"""

_ERRORS = (RedisError, OSError, TimeoutError)

MAX_BATCH = 256
"""Joins and leaves sent in one pipeline, at most (each is one or two commands)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPresence:
    """The [`Presence`][tempest_ws.backplane.base.Presence] of `RedisBackplane`."""

    def __init__(
        self, *, prefix: str, ttl: float, timeout: float, stop_timeout: float = STOP_TIMEOUT
    ) -> None:
        self._prefix = prefix
        self._stop_timeout = stop_timeout
        self._ttl = ttl
        self._timeout = timeout
        self._client: Client | None = None
        self._node = ""
        self._link_up: Callable[[], bool] = lambda: False
        self._local: dict[str, tuple[str, float]] = {}
        self._per_user: Counter[str] = Counter()
        self._unsent_leaves: set[tuple[str, str]] = set()
        self._dead: frozenset[str] = frozenset()
        self._dirty = False
        self._ops: SerialOps[tuple[Any, ...]] = SerialOps(
            name="tempest_ws presence",
            timeout=timeout,
            errors=_ERRORS,
            apply=self._apply,
            failed=self._failed,
            batchable=lambda op: op[0] != "announce",
            max_batch=MAX_BATCH,
            stop_timeout=stop_timeout,
        )
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._topics = RedisTopicPresence(prefix=prefix, timeout=timeout, stop_timeout=stop_timeout)

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}:{kind}:{name}"

    def _member(self, connection_id: str) -> str:
        return f"{self._node}/{connection_id}"

    # -- lifecycle (driven by RedisBackplane) --------------------------------------------

    def start(
        self,
        client: Client,
        node_id: str,
        link_up: Callable[[], bool],
        on_expired: Callable[[str, str], None],
    ) -> None:
        self._client, self._node, self._link_up = client, node_id, link_up
        self._topics.start(
            client,
            node_id,
            link_up=link_up,
            dead=lambda: self._dead,
            mark_dirty=self._mark_dirty,
            on_expired=on_expired,
        )
        self._ops.start(link_up)
        self._heartbeat_task = asyncio.create_task(
            self._heartbeat(), name="tempest_ws presence heartbeat"
        )

    async def stop(self) -> None:
        """Apply queued ops (bounded), remove this node, stop the tasks.

        Each step is bounded by ``stop_timeout`` (removing this node by ``timeout``); a
        step that outlasts it is abandoned and logged."""
        await self._topics.stop()
        left = await self._ops.stop()
        heartbeat, self._heartbeat_task = self._heartbeat_task, None
        await cancel_tasks([heartbeat], "presence heartbeat", limit=self._stop_timeout)
        if self._client is not None and self._link_up():
            with contextlib.suppress(*_ERRORS):
                await bounded(
                    self._remove_node(self._node),
                    f"removal of node {self._node} from presence",
                    limit=self._timeout,
                )
        self._local.clear()
        self._per_user.clear()
        for op in left:
            if op[0] == "join" and not op[-1].done():
                op[-1].set_exception(BackplaneError("redis backplane stopped"))

    def recovered(self) -> None:
        """The link is up (again): write this node's heartbeat and whole presence (after
        an outage Redis may have restarted empty)."""
        self._dirty = True
        self._ops.push(("announce",))
        self._topics.recovered()

    def _mark_dirty(self) -> None:
        self._dirty = True

    # -- Presence ----------------------------------------------------------------------

    async def join(
        self, user: str, connection_id: str, *, connected_at: float, limit: int
    ) -> list[Member]:
        score = int(connected_at * 1_000_000)
        self._local[connection_id] = (user, score)
        self._per_user[user] += 1
        if not self._link_up():
            self._dirty = True
            raise BackplaneError("redis unreachable: presence not updated")
        done: asyncio.Future[list[Member]] = asyncio.get_running_loop().create_future()
        self._ops.push(("join", user, connection_id, score, limit, done))
        return await done

    def leave(self, user: str, connection_id: str) -> None:
        if self._local.pop(connection_id, None) is None:
            return
        self._per_user[user] -= 1
        last = self._per_user[user] <= 0
        if last:
            del self._per_user[user]
        self._ops.push(("leave", user, connection_id, last))

    async def online_users(self) -> set[str]:
        return set(await self._users_on_live_nodes(None))

    async def is_online(self, user: str) -> bool:
        return bool(await self._users_on_live_nodes(user))

    def topic_join(self, topic: str, user: str) -> asyncio.Future[bool]:
        return self._topics.join(topic, user)

    def topic_leave(self, topic: str, user: str) -> asyncio.Future[bool]:
        return self._topics.leave(topic, user)

    async def topic_members(self, topic: str) -> set[str]:
        async def live() -> list[str]:
            return (await self._nodes(refresh=False))[0]

        return await self._topics.members(topic, live)

    async def _users_on_live_nodes(self, user: str | None) -> list[str]:
        """Every user (or just ``user``, if online) in the sets of the live nodes."""
        try:
            async with asyncio.timeout(self._timeout):
                live, _ = await self._nodes(refresh=False)
                if not live:
                    return []
                pipe = self._require().pipeline(transaction=False)
                for node in live:
                    key = self._key("nodeusers", node)
                    pipe.smembers(key) if user is None else pipe.sismember(key, user)
                replies = await pipe.execute()
        except _ERRORS as exc:
            raise BackplaneError(f"presence unreachable ({describe(exc)})") from exc
        if user is not None:
            return [user] if any(replies) else []
        return [_text(name) for members in replies for name in members]

    # -- the worker --------------------------------------------------------------------

    def _require(self) -> Client:
        if self._client is None:
            raise BackplaneError("redis backplane is not started")
        return self._client

    async def _apply(self, run: list[tuple[Any, ...]]) -> None:
        """Apply a run of joins and leaves as one pipeline, in order (or announce).

        A command Redis refuses fails its own op only (``_failed``); the rest of the run
        is applied. A failure of the whole pipeline (link, timeout) is raised, and the
        worker fails every op of the run."""
        if run[0][0] == "announce":
            await self._announce()
            return
        client = self._require()
        nodeusers = self._key("nodeusers", self._node)
        dead = ",".join(sorted(self._dead))
        pipe = client.pipeline(transaction=False)
        for op in run:
            if op[0] == "join":
                _, user, connection_id, score, limit, _ = op
                member = self._member(connection_id)
                pipe.eval(_JOIN, 1, self._key("presence", user), member, score, limit, dead)
                pipe.sadd(nodeusers, user)
            else:
                _, user, connection_id, last = op
                pipe.zrem(self._key("presence", user), self._member(connection_id))
                if last:
                    pipe.srem(nodeusers, user)
        replies = iter(await pipe.execute(raise_on_error=False))
        for op in run:
            sent = 2 if op[0] == "join" or op[-1] else 1  # a leave of not the last: ZREM
            outcome = [next(replies) for _ in range(sent)]
            error = next((r for r in outcome if isinstance(r, Exception)), None)
            if error is not None:
                self._failed(op, error)
            elif op[0] == "join" and not op[-1].done():
                op[-1].set_result([Member(*_text(m).split("/", 1)) for m in outcome[0]])

    def _failed(self, op: tuple[Any, ...], exc: BaseException) -> None:
        self._dirty = True
        logger.warning("presence %s not applied (%s)", op[0], describe(exc))
        if op[0] == "join":
            done = op[-1]
            if not done.done():
                done.set_exception(BackplaneError(f"presence unreachable ({describe(exc)})"))
        elif op[0] == "leave":
            self._unsent_leaves.add((op[1], op[2]))

    async def _announce(self) -> None:
        """Write this node's whole presence again (after an outage or a failed op).

        A connection whose join is still queued behind this write is left to its join:
        written here, it would count against the user's cap in its own join and in the
        joins of the connections before it, which would then evict the newer ones."""
        client = self._require()
        await self._nodes(refresh=True)
        pipe = client.pipeline(transaction=False)
        # Ops stay queued while applied: behind this write are the ops called after it.
        queued = {op[2] for op in self._ops if op[0] == "join"}
        for connection_id, (user, score) in self._local.items():
            if connection_id in queued:
                continue
            pipe.zadd(self._key("presence", user), {self._member(connection_id): score})
        for user, connection_id in self._unsent_leaves:
            pipe.zrem(self._key("presence", user), self._member(connection_id))
        nodeusers = self._key("nodeusers", self._node)
        pipe.delete(nodeusers)
        if self._per_user:
            pipe.sadd(nodeusers, *self._per_user)
        await pipe.execute()
        self._unsent_leaves.clear()
        self._dirty = False
        logger.info("presence of node %s written (%d connections)", self._node, len(self._local))

    # -- node liveness -----------------------------------------------------------------

    async def _nodes(self, *, refresh: bool) -> tuple[list[str], list[str]]:
        """(live, dead) node ids by Redis's clock; ``refresh`` records our heartbeat."""
        raw = await self._require().eval(
            _NODES, 1, self._key("nodes", "all"), self._node if refresh else ""
        )
        now = int(raw[0])
        if refresh and not int(raw[1]):
            self._dirty = True  # taken for dead meanwhile: write everything again
        live: list[str] = []
        dead: list[str] = []
        for i in range(2, len(raw), 2):
            node, seen = _text(raw[i]), float(raw[i + 1])
            (live if now - seen <= self._ttl * 1000 else dead).append(node)
        self._dead = frozenset(dead)
        return live, dead

    async def _heartbeat(self) -> None:
        while True:
            lost_cancellation()
            try:
                if self._link_up():
                    async with asyncio.timeout(self._timeout * 2):
                        _, dead = await self._nodes(refresh=True)
                        for node in dead:
                            await self._reap(node)
                    if self._dirty and not self._ops:
                        self.recovered()
            except _ERRORS as exc:
                self._dirty = True
                logger.warning("presence heartbeat failed (%s)", describe(exc))
            lost_cancellation()  # before the long sleep, not after it
            await asyncio.sleep(self._ttl / 3)

    async def _reap(self, node: str) -> None:
        """Scrub a dead node's members; one live node does it (``SET NX`` claim)."""
        client = self._require()
        claimed = await client.set(self._key("reaping", node), self._node, nx=True, ex=60)
        if not claimed:
            return
        logger.info("node %s missed its presence heartbeats; removing its connections", node)
        await self._remove_node(node, notify=True)

    async def _remove_node(self, node: str, *, notify: bool = False) -> None:
        client = self._require()
        await self._topics.remove_node(node, notify=notify)
        nodeusers = self._key("nodeusers", node)
        users = list(await client.smembers(nodeusers))
        for start in range(0, len(users), MAX_BATCH):  # a pipeline per batch of users
            pipe = client.pipeline(transaction=False)
            for user in users[start : start + MAX_BATCH]:
                pipe.eval(_SCRUB, 1, self._key("presence", _text(user)), node)
            await pipe.execute()
        await client.delete(nodeusers)
        await client.zrem(self._key("nodes", "all"), node)
