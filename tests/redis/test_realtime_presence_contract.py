"""Topic presence, one contract for every backplane: the same bodies run on
InMemoryBackplane (nodes on one bus) and on RedisBackplane (nodes on a real redis-server),
plus what only Redis can show: a node that stops refreshing its heartbeat is reaped and
its users' leaves are reported to a live node, and hubs on real Redis announce a join
and a leave exactly once across nodes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tempest_ws import WebSocketHub, allow_any_topic
from tempest_ws.backplane import Backplane
from tempest_ws.realtime import PRESENCE_JOIN, PRESENCE_LEAVE
from tests.helpers.backplane_nodes import NodeFactory, Recorder, nodes_on, redis_backplane
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import Peer, require_tool, until, until_async


def _redis_backplane(url: str) -> Backplane:
    return redis_backplane(url, presence_ttl=1.5)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def start_node(request: pytest.FixtureRequest) -> AsyncIterator[NodeFactory]:
    async with nodes_on(request.param, presence_ttl=1.5) as start:
        yield start


async def test_a_user_joins_once_and_leaves_once_across_nodes(start_node: NodeFactory) -> None:
    a, b = await start_node(), await start_node()
    pa, pb = a.backplane.presence, b.backplane.presence
    assert await pa.topic_join("t", "u") is True  # the first node: a join to announce
    assert await pb.topic_join("t", "u") is False  # already there (on a)
    assert await pb.topic_join("t", "w") is True
    assert await pa.topic_members("t") == await pb.topic_members("t") == {"u", "w"}
    assert await pa.topic_leave("t", "u") is False  # still held by b
    assert await pb.topic_members("t") == {"u", "w"}
    assert await pb.topic_leave("t", "u") is True  # gone everywhere: a leave to announce
    assert await pa.topic_members("t") == {"w"}
    assert await pb.topic_leave("t", "u") is False  # idempotent
    assert await pa.topic_members("elsewhere") == set()


async def test_concurrent_joins_announce_exactly_once(start_node: NodeFactory) -> None:
    nodes = [await start_node() for _ in range(3)]
    firsts = await asyncio.gather(*(n.backplane.presence.topic_join("t", "u") for n in nodes))
    assert sorted(firsts) == [False, False, True]
    lasts = await asyncio.gather(*(n.backplane.presence.topic_leave("t", "u") for n in nodes))
    assert sorted(lasts) == [False, False, True]


async def test_a_stopped_node_leaves_topic_presence(start_node: NodeFactory) -> None:
    a, b = await start_node(), await start_node()
    assert await b.backplane.presence.topic_join("t", "v") is True
    assert await a.backplane.presence.topic_members("t") == {"v"}
    await b.backplane.stop()

    async def gone() -> bool:
        return await a.backplane.presence.topic_members("t") == set()

    await until_async(gone)
    assert await a.backplane.presence.topic_join("t", "v") is True  # a fresh join again


# -- Redis only: a dead node ------------------------------------------------------------


@pytest.mark.redis
async def test_a_dead_nodes_users_expire_and_one_live_node_reports_their_leaves() -> None:
    require_tool("redis-server")
    server = RedisServer()
    server.start()
    prefix = "tempest_ws"
    alive = _redis_backplane(server.url)
    listener = Recorder()
    try:
        await alive.start("00000000000a", listener)
        assert await alive.presence.topic_join("room", "ann") is True
        # A node that crashed a while ago: in the node list with a stale heartbeat,
        # holding "bob" (alone) and "ann" (also held by the live node) in "room".
        dead = "00000000dead"
        stale_ms = int((time.time() - 60) * 1000)
        with server.client() as raw:
            raw.zadd(f"{prefix}:nodes:all", {dead: stale_ms})
            raw.hset(f"{prefix}:tpresence:room", "bob", dead)
            raw.hset(f"{prefix}:tpresence:room", "ann", f"00000000000a,{dead}")
            raw.sadd(
                f"{prefix}:nodetopics:{dead}",
                json.dumps(["room", "bob"], separators=(",", ":")),
                json.dumps(["room", "ann"], separators=(",", ":")),
            )
        # Dead nodes never count, even before they are reaped.
        assert await alive.presence.topic_members("room") == {"ann"}
        await until(lambda: listener.expired == [("room", "bob")], timeout=10)
        with server.client() as raw:
            # The leave is reported while the reaper goes through the dead node's pairs;
            # its list is deleted after the last one.
            await until(lambda: raw.exists(f"{prefix}:nodetopics:{dead}") == 0, timeout=10)
            assert raw.hgetall(f"{prefix}:tpresence:room") == {b"ann": b"00000000000a"}
    finally:
        await alive.stop()
        server.close()


@pytest.mark.redis
async def test_hubs_on_redis_announce_one_join_and_one_leave_for_two_tabs() -> None:
    require_tool("redis-server")
    server = RedisServer()
    server.start()
    a, b = (
        WebSocketHub(
            backplane=_redis_backplane(server.url),
            presence=True,
            topic_authorizer=allow_any_topic,
        )
        for _ in range(2)
    )
    try:
        await a.start()
        await b.start()
        observer_peer = Peer()
        observer = b.create_connection("olga", send=observer_peer.send)
        await b.register(observer)
        observer.start()
        await b.subscribe(observer.connection_id, "room")
        tabs = []
        for hub in (a, b):
            tab = hub.create_connection("alice", send=Peer().send)
            await hub.register(tab)
            tab.start()
            assert await hub.subscribe(tab.connection_id, "room")
            tabs.append(tab)

        def seen(kind: str) -> list[Any]:
            return [
                json.loads(t)["data"]
                for t in observer_peer.texts()
                if json.loads(t)["type"] == kind
            ]

        await until(lambda: len(seen(PRESENCE_JOIN)) == 1, timeout=10)
        await tabs[0].close()
        carol = a.create_connection("carol", send=Peer().send)  # a barrier from hub a
        await a.register(carol)
        carol.start()
        await a.subscribe(carol.connection_id, "room")
        await until(lambda: len(seen(PRESENCE_JOIN)) == 2, timeout=10)
        assert seen(PRESENCE_LEAVE) == []
        await tabs[1].close()
        await until(lambda: seen(PRESENCE_LEAVE) == [{"topic": "room", "user_id": "alice"}], 10)
        assert await a.presence("room") == {"olga", "carol"}
    finally:
        await a.stop()
        await b.stop()
        server.close()
