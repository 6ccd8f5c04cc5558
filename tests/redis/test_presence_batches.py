"""Presence writes and channel interest sent in batches, on a real redis-server.

A node queues its presence joins and leaves and applies them in pipelined runs; its
pub/sub writer sends a run of subscribes (or unsubscribes) as one command. These tests
queue far more than one run holds, all in one turn of the event loop, and check what
Redis holds afterwards: the same entries the one-at-a-time writes gave, a leave and a
join of one user or connection applied in call order, a command Redis refuses failing
its own op only, and many concurrent joins and leaves ending in the right presence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from tempest_ws.backplane import Backplane, Member
from tempest_ws.backplane._redis_presence import MAX_BATCH
from tempest_ws.exceptions import BackplaneError
from tests.helpers.backplane_nodes import Recorder, redis_backplane
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import until, until_async

pytestmark = pytest.mark.redis

PREFIX = "tempest_ws"
NODE = "00000000000a"


@pytest.fixture
async def node(redis: RedisServer) -> AsyncIterator[Backplane]:
    backplane = redis_backplane(redis.url)
    await backplane.start(NODE, Recorder())
    # The first write of the node's presence is queued at start; once a join queued
    # after it is done, what a test queues is applied from a settled start.
    await backplane.presence.join("warm", "w0", connected_at=time.time(), limit=1)
    backplane.presence.leave("warm", "w0")  # applied before anything a test queues
    try:
        yield backplane
    finally:
        await backplane.stop()


def _members(redis: RedisServer, user: str) -> set[str]:
    with redis.client() as client:
        return {m.decode() for m in client.zrange(f"{PREFIX}:presence:{user}", 0, -1)}


def _node_users(redis: RedisServer) -> set[str]:
    with redis.client() as client:
        return {m.decode() for m in client.smembers(f"{PREFIX}:nodeusers:{NODE}")}


async def _later(call: Callable[[], None]) -> None:
    call()


def _in_turn(call: Callable[[], None]) -> asyncio.Task[None]:
    """``call`` from a task: it runs after the tasks made before it, in order."""
    return asyncio.ensure_future(_later(call))


def _join(
    node: Backplane, user: str, connection: str, limit: int = 5
) -> asyncio.Task[list[Member]]:
    coro = node.presence.join(user, connection, connected_at=time.time(), limit=limit)
    return asyncio.ensure_future(coro)


async def test_a_backlog_of_leaves_then_joins_leaves_the_same_entries(
    node: Backplane, redis: RedisServer
) -> None:
    n = 3 * MAX_BATCH + 7  # several runs, the last one short
    assert await asyncio.gather(*(_join(node, f"u{i}", f"c{i}") for i in range(n))) == [[]] * n
    assert _node_users(redis) == {f"u{i}" for i in range(n)}
    for i in range(n):  # a mass disconnect, then the clients come back
        node.presence.leave(f"u{i}", f"c{i}")
    back = [_join(node, f"u{i}", f"d{i}") for i in range(0, n, 2)]
    assert await asyncio.gather(*back) == [[]] * len(back)
    assert await node.presence.online_users() == {f"u{i}" for i in range(0, n, 2)}
    assert _node_users(redis) == {f"u{i}" for i in range(0, n, 2)}
    for i in (0, 1, n - 1):
        expected = {f"{NODE}/d{i}"} if i % 2 == 0 else set()
        assert _members(redis, f"u{i}") == expected
    assert await node.presence.is_online("u1") is False


async def test_a_leave_and_a_join_in_one_batch_keep_their_order(
    node: Backplane, redis: RedisServer
) -> None:
    await _join(node, "u", "c1")
    await _join(node, "u", "c2")
    await _join(node, "v", "c3")
    await _join(node, "w", "c5")
    # Queued in this order in one turn of the loop, so they share one run:
    left = [
        _in_turn(lambda: node.presence.leave("u", "c1")),  # not u's last connection
        _in_turn(lambda: node.presence.leave("u", "c2")),  # u's last: u leaves the node...
    ]
    again = _join(node, "u", "c1")  # ...and comes back on the same connection id
    left.append(_in_turn(lambda: node.presence.leave("v", "c3")))
    fresh = _join(node, "v", "c4")
    gone = _join(node, "w", "c6")  # a join, and a leave of the same connection after it
    left.append(_in_turn(lambda: node.presence.leave("w", "c6")))
    assert await asyncio.gather(again, fresh, gone) == [[], [], []]
    await asyncio.gather(*left)
    await until(lambda: _members(redis, "w") == {f"{NODE}/c5"})
    assert _members(redis, "u") == {f"{NODE}/c1"}
    assert _members(redis, "v") == {f"{NODE}/c4"}
    assert _node_users(redis) == {"u", "v", "w"}
    node.presence.leave("w", "c5")
    await until(lambda: "w" not in _node_users(redis))
    assert await node.presence.online_users() == {"u", "v"}


async def test_the_user_cap_evicts_the_oldest_within_one_batch(node: Backplane) -> None:
    joins = [_join(node, "u", f"c{i}", limit=2) for i in range(4)]
    evicted = await asyncio.gather(*joins)
    assert evicted == [[], [], [Member(NODE, "c0")], [Member(NODE, "c1")]]


async def test_a_command_redis_refuses_fails_its_own_op_only(
    node: Backplane, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.client() as client:  # a key of the wrong type: Redis refuses ZADD on it
        client.set(f"{PREFIX}:presence:broken", "not a sorted set")
    caplog.set_level(logging.WARNING, logger="tempest_ws.backplane")
    joins = [_join(node, f"u{i}", f"c{i}") for i in range(10)]
    broken = _join(node, "broken", "cx")
    joins += [_join(node, f"u{i}", f"c{i}") for i in range(10, 20)]
    assert await asyncio.gather(*joins) == [[]] * 20
    with pytest.raises(BackplaneError, match="presence unreachable"):
        await broken
    assert "presence join not applied (ResponseError: WRONGTYPE" in caplog.text
    assert await node.presence.online_users() >= {f"u{i}" for i in range(20)}
    for i in range(20):
        assert _members(redis, f"u{i}") == {f"{NODE}/c{i}"}


async def test_many_concurrent_joins_and_leaves_end_in_the_right_presence(
    redis: RedisServer,
) -> None:
    nodes = [redis_backplane(redis.url) for _ in range(2)]
    for i, backplane in enumerate(nodes):
        await backplane.start(f"{i + 1:012x}", Recorder())
    try:
        online: dict[str, set[str]] = {}

        async def client(k: int) -> None:
            user, backplane = f"u{k % 300}", nodes[k % 2]
            for round_ in range(3):
                connection = f"c{k}-{round_}"
                await backplane.presence.join(user, connection, connected_at=time.time(), limit=9)
                await asyncio.sleep(0)
                if round_ < 2 or k % 3 == 0:  # a third of them stay on the last round
                    backplane.presence.leave(user, connection)
                else:
                    online.setdefault(user, set()).add(connection)

        await asyncio.gather(*(client(k) for k in range(900)))
        want = set(online)
        assert 0 < len(want) < 300
        for backplane in nodes:  # the last leaves may still be on their way

            async def settled(backplane: Backplane = backplane) -> bool:
                return await backplane.presence.online_users() == want

            await until_async(settled)
        for user in ("u0", "u1", "u2", "u3", "u299"):
            held = {m.split("/", 1)[1] for m in _members(redis, user)}
            assert held == online.get(user, set())
    finally:
        for backplane in nodes:
            await backplane.stop()


async def test_a_run_of_subscribes_and_unsubscribes_keeps_the_order(
    node: Backplane, redis: RedisServer
) -> None:
    channels = [f"user:{i}" for i in range(1200)]
    await asyncio.gather(*(node.subscribe(c) for c in channels))
    for c in channels[::2]:
        node.unsubscribe(c)
    steps = [  # in this order, in one turn of the loop
        _in_turn(lambda: node.unsubscribe("user:1")),  # an unsubscribe, a subscribe again
        asyncio.ensure_future(node.subscribe("user:1")),
        asyncio.ensure_future(node.subscribe("late")),  # and the other way round
        _in_turn(lambda: node.unsubscribe("late")),
    ]
    await asyncio.gather(*steps)

    def counts() -> dict[str, int]:
        names = [f"{PREFIX}:{c}" for c in [*channels, "late"]]
        with redis.client() as client:
            return {k.decode()[len(PREFIX) + 1 :]: int(v) for k, v in client.pubsub_numsub(*names)}

    want = {c: i % 2 for i, c in enumerate(channels)} | {"late": 0}
    await until(lambda: counts() == want)


async def test_joins_queued_behind_the_first_presence_write_keep_the_cap(
    redis: RedisServer,
) -> None:
    # The node's whole presence is written once at start (and after any outage); a join
    # queued behind that write must not be written by it too, or its cap check would
    # count the newcomers joined after it and evict a connection it should keep.
    backplane = redis_backplane(redis.url)
    await backplane.start(NODE, Recorder())
    try:
        joins = [_join(backplane, "u", f"c{i}", limit=1) for i in range(3)]
        evicted = await asyncio.gather(*joins)
        assert evicted == [[], [Member(NODE, "c0")], [Member(NODE, "c1")]]
        assert _members(redis, "u") == {f"{NODE}/c2"}
    finally:
        await backplane.stop()
