"""Topic presence in Redis: which users are subscribed to which topic, on live nodes.

Keys (``P`` is the channel prefix; every command touches one key, so it works unchanged
on Redis Cluster):

``P:tpresence:<topic>``  HASH user -> comma-separated ids of the nodes holding that user
``P:nodetopics:<node>``  SET of JSON ``[topic, user]`` pairs the node holds (for cleanup)

The hub counts a user's tabs itself and calls ``join``/``leave`` only when its node's
count for that user and topic goes from 0 to 1 or from 1 to 0, so the hash holds one
entry per node and user, never one per tab. Each call runs one Lua script on the
topic's key that ignores nodes known dead and answers whether the user was absent
before (join) or is absent now (leave) on every live node: the cluster-wide transition,
announced by exactly one node. Calls are applied by one task, in call order.

When a node dies (it stops refreshing its heartbeat, see ``_redis_presence``), the live
node that reaps it runs the leave script for each pair the dead node held and reports
the users that thereby left (``on_expired``): the hub announces their ``presence.leave``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from tempest_ws._bounded import STOP_TIMEOUT
from tempest_ws.backplane._redis_link import describe
from tempest_ws.backplane._serial_ops import SerialOps
from tempest_ws.exceptions import BackplaneError

__all__ = ["RedisTopicPresence"]

logger = logging.getLogger("tempest_ws.backplane")

Client = Redis | RedisCluster

_JOIN = """
local dead = {}
for node in string.gmatch(ARGV[3], '[^,]+') do dead[node] = true end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local nodes, present = {}, false
if raw then
  for node in string.gmatch(raw, '[^,]+') do
    if not dead[node] then
      present = true
      if node ~= ARGV[2] then nodes[#nodes + 1] = node end
    end
  end
end
nodes[#nodes + 1] = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], table.concat(nodes, ','))
if present then return 0 end
return 1
"""

_LEAVE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local dead = {}
for node in string.gmatch(ARGV[3], '[^,]+') do dead[node] = true end
local nodes, had = {}, false
for node in string.gmatch(raw, '[^,]+') do
  if node == ARGV[2] then had = true
  elseif not dead[node] then nodes[#nodes + 1] = node end
end
if #nodes == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if had then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], table.concat(nodes, ','))
return 0
"""

_ERRORS = (RedisError, OSError, TimeoutError)

Pair = tuple[str, str]
_Op = tuple[str, Pair | None, asyncio.Future[bool] | None]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pair_member(topic: str, user: str) -> str:
    return json.dumps([topic, user], separators=(",", ":"), ensure_ascii=True)


def _pair_of(member: Any) -> Pair | None:
    try:
        topic, user = json.loads(_text(member))
    except (ValueError, TypeError):
        return None
    return (topic, user) if isinstance(topic, str) and isinstance(user, str) else None


class RedisTopicPresence:
    """The topic half of [`RedisPresence`][tempest_ws.backplane._redis_presence.RedisPresence]."""

    def __init__(self, *, prefix: str, timeout: float, stop_timeout: float = STOP_TIMEOUT) -> None:
        self._prefix = prefix
        self._timeout = timeout
        self._client: Client | None = None
        self._node = ""
        self._link_up: Callable[[], bool] = lambda: False
        self._dead: Callable[[], frozenset[str]] = frozenset
        self._dirty: Callable[[], None] = lambda: None
        self._on_expired: Callable[[str, str], None] = lambda topic, user: None
        self._local: set[Pair] = set()
        self._unsent_leaves: set[Pair] = set()
        self._ops: SerialOps[_Op] = SerialOps(
            name="tempest_ws topic presence",
            timeout=timeout,
            errors=_ERRORS,
            apply=lambda run: self._apply_op(run[0]),  # one op per run
            failed=lambda op, exc: self._failed(*op, exc),
            before=self._track,
            stop_timeout=stop_timeout,
        )

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}:{kind}:{name}"

    # -- lifecycle (driven by RedisPresence) --------------------------------------------

    def start(
        self,
        client: Client,
        node_id: str,
        *,
        link_up: Callable[[], bool],
        dead: Callable[[], frozenset[str]],
        mark_dirty: Callable[[], None],
        on_expired: Callable[[str, str], None],
    ) -> None:
        self._client, self._node = client, node_id
        self._link_up, self._dead, self._dirty = link_up, dead, mark_dirty
        self._on_expired = on_expired
        self._ops.start(link_up)

    async def stop(self) -> None:
        """Apply queued ops (bounded), stop the worker, fail what is left."""
        for _, _, done in await self._ops.stop():
            if done is not None and not done.done():
                done.set_exception(BackplaneError("redis backplane stopped"))
        self._local.clear()
        self._unsent_leaves.clear()

    def recovered(self) -> None:
        """Write this node's whole topic presence again (queued after pending ops)."""
        self._ops.push(("announce", None, None))

    # -- the Presence methods ----------------------------------------------------------

    def join(self, topic: str, user: str) -> asyncio.Future[bool]:
        return self._enqueue("join", (topic, user))

    def leave(self, topic: str, user: str) -> asyncio.Future[bool]:
        return self._enqueue("leave", (topic, user))

    async def members(self, topic: str, live: Callable[[], Awaitable[list[str]]]) -> set[str]:
        """Users of ``topic`` held by one of the nodes ``live()`` returns."""
        try:
            async with asyncio.timeout(self._timeout):
                nodes = set(await live())
                raw = await self._require().hgetall(self._key("tpresence", topic))
        except _ERRORS as exc:
            raise BackplaneError(f"presence unreachable ({describe(exc)})") from exc
        return {
            _text(user)
            for user, held in raw.items()
            if any(node in nodes for node in _text(held).split(","))
        }

    # -- the worker --------------------------------------------------------------------

    def _enqueue(self, kind: str, pair: Pair) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._ops.push((kind, pair, done))
        return done

    def _require(self) -> Client:
        if self._client is None:
            raise BackplaneError("redis backplane is not started")
        return self._client

    def _track(self, op: _Op) -> None:
        # What this node holds, as of the ops applied so far (whether Redis took them or
        # not): what an announcement queued after them writes again.
        kind, pair, _ = op
        if pair is not None and kind == "join":
            self._local.add(pair)
            self._unsent_leaves.discard(pair)
        elif pair is not None:
            self._local.discard(pair)

    async def _apply_op(self, op: _Op) -> None:
        kind, pair, done = op
        result = await self._apply(kind, pair)
        if done is not None and not done.done():
            done.set_result(result)

    async def _apply(self, kind: str, pair: Pair | None) -> bool:
        client = self._require()
        if pair is None:
            await self._announce()
            return True
        topic, user = pair
        script = _JOIN if kind == "join" else _LEAVE
        dead = ",".join(sorted(self._dead()))
        key = self._key("tpresence", topic)
        changed = await client.eval(script, 1, key, user, self._node, dead)
        nodetopics = self._key("nodetopics", self._node)
        if kind == "join":
            await client.sadd(nodetopics, _pair_member(topic, user))
        else:
            await client.srem(nodetopics, _pair_member(topic, user))
        return bool(int(changed))

    def _failed(
        self, kind: str, pair: Pair | None, done: asyncio.Future[bool] | None, exc: BaseException
    ) -> None:
        self._dirty()
        logger.warning("topic presence %s not applied (%s)", kind, describe(exc))
        if kind == "leave" and pair is not None:
            self._unsent_leaves.add(pair)
        if done is not None and not done.done():
            done.set_exception(BackplaneError(f"presence unreachable ({describe(exc)})"))

    async def _announce(self) -> None:
        """Write every pair this node holds again, remove the leaves that failed."""
        client = self._require()
        dead = ",".join(sorted(self._dead()))
        pipe = client.pipeline(transaction=False)
        for topic, user in self._unsent_leaves - self._local:
            pipe.eval(_LEAVE, 1, self._key("tpresence", topic), user, self._node, dead)
        for topic, user in self._local:
            pipe.eval(_JOIN, 1, self._key("tpresence", topic), user, self._node, dead)
        nodetopics = self._key("nodetopics", self._node)
        pipe.delete(nodetopics)
        if self._local:
            pipe.sadd(nodetopics, *(_pair_member(t, u) for t, u in self._local))
        await pipe.execute()
        self._unsent_leaves.clear()

    # -- a node's cleanup --------------------------------------------------------------

    async def remove_node(self, node: str, *, notify: bool) -> None:
        """Remove every pair ``node`` holds; with ``notify``, report each user that left
        a topic thereby (``on_expired``)."""
        client = self._require()
        nodetopics = self._key("nodetopics", node)
        dead = ",".join(sorted({*self._dead(), node}))
        for member in await client.smembers(nodetopics):
            pair = _pair_of(member)
            if pair is None:
                continue
            topic, user = pair
            left = await client.eval(_LEAVE, 1, self._key("tpresence", topic), user, node, dead)
            if notify and int(left):
                try:
                    self._on_expired(topic, user)
                except Exception:  # the listener's bug must not stop the cleanup
                    logger.exception("presence listener failed for topic %s", topic)
        await client.delete(nodetopics)
