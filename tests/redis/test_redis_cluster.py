"""A real 3-node Redis Cluster (three ``redis-server --cluster-enabled yes`` joined by
``redis-cli --cluster create``) carries sharded pub/sub traffic: each channel lives on
the shard owning its hash slot (``SSUBSCRIBE``/``SPUBLISH``), so adding shards adds
pub/sub capacity."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tempest_ws import CloseCode, WebSocketHub
from tempest_ws.backplane import Backplane
from tests.helpers.backplane_nodes import Recorder
from tests.helpers.redis_server import RedisClusterNodes
from tests.helpers.scaleout_app import AppProcess, start_all
from tests.helpers.support import SECRET, notes, token, until
from tests.helpers.support import connect as connect_peer

pytestmark = pytest.mark.redis


def backplane(cluster: RedisClusterNodes, prefix: str) -> Backplane:
    from tempest_ws.backplane import RedisBackplane

    return RedisBackplane(
        cluster.url,
        cluster=True,
        channel_prefix=prefix,
        timeout=1.0,
        health_check_interval=1.0,
        reconnect_max=0.2,
        presence_ttl=3,
    )


@contextlib.asynccontextmanager
async def hubs(cluster: RedisClusterNodes, count: int, **options: Any) -> AsyncIterator[Any]:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    started = [WebSocketHub(backplane=backplane(cluster, prefix), **options) for _ in range(count)]
    try:
        for hub in started:
            await hub.start()
        yield started
    finally:
        for hub in started:
            await hub.stop()


def shard_channels(cluster: RedisClusterNodes, prefix: str) -> list[set[str]]:
    found = []
    for node in cluster.nodes:
        with node.client() as client:
            names = client.execute_command("PUBSUB", "SHARDCHANNELS", f"{prefix}:*")
            classic = client.execute_command("PUBSUB", "CHANNELS", f"{prefix}:*")
        assert classic == []  # nothing on cluster-wide (broadcast to every shard) pub/sub
        found.append({n.decode() for n in names})
    return found


async def test_topic_channels_are_sharded_and_carry_traffic(cluster: RedisClusterNodes) -> None:
    async with hubs(cluster, 2) as (a, b):
        topics = [f"room-{i}" for i in range(24)]
        subscribers = []
        for topic in topics:
            connection, peer = await connect_peer(a, f"u-{topic}")
            await a.subscribe(connection.connection_id, topic)
            subscribers.append(peer)
        prefix = a.backplane.channel_prefix
        per_shard = shard_channels(cluster, prefix)
        assert all(per_shard), per_shard  # every shard carries some of the channels
        assert set().union(*per_shard) >= {f"{prefix}:topic:{t}" for t in topics}
        assert sum(map(len, per_shard)) == len(set().union(*per_shard))  # each on one shard

        for i, topic in enumerate(topics):
            assert await b.broadcast({"type": "n", "data": i}, topic=topic) == 0
        await until(lambda: all(notes(p) for p in subscribers), 10)
        await asyncio.sleep(0.3)  # room for duplicates to show
        assert [notes(p) for p in subscribers] == [[i] for i in range(len(topics))]


async def test_user_delivery_cap_and_presence_across_shards(cluster: RedisClusterNodes) -> None:
    async with hubs(cluster, 2, max_per_user=2) as (a, b):
        first, p1 = await connect_peer(a, "zoe")
        _, p2 = await connect_peer(b, "zoe")
        assert await a.is_online("zoe")
        assert "zoe" in await b.online_users()
        await b.send_to("zoe", {"type": "n", "data": "hi"})
        await until(lambda: notes(p1) == ["hi"] and notes(p2) == ["hi"])
        await connect_peer(b, "zoe")  # third tab: the oldest, on a, is evicted
        await first.wait_closed()
        assert p1.close_codes() == [CloseCode.TOO_MANY_CONNECTIONS]


async def test_the_cluster_link_recovers_and_resyncs(cluster: RedisClusterNodes) -> None:
    async with hubs(cluster, 2) as (a, b):
        connection, peer = await connect_peer(a, "yan")
        await a.subscribe(connection.connection_id, "after-kill")
        killed = 0
        for node in cluster.nodes:
            with node.client() as client:
                killed += int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
        assert killed >= 2
        await until(lambda: any('"resync"' in t for t in peer.texts()), 10)
        for attempt in range(100):  # bounded: publish until delivery resumed
            await b.broadcast({"type": "n", "data": attempt}, topic="after-kill")
            with contextlib.suppress(TimeoutError):
                await until(lambda: bool(notes(peer)), 0.1)
                break
        assert notes(peer)


async def test_two_processes_share_the_cluster(cluster: RedisClusterNodes, tmp_path: Path) -> None:
    env = {
        "WS_JWT_SECRET": SECRET,
        "WS_REDIS_URL": cluster.url,
        "WS_REDIS_CLUSTER": "true",
        "WS_REDIS_CHANNEL_PREFIX": f"p{uuid.uuid4().hex[:8]}",
        "WS_REDIS_TIMEOUT_SECONDS": "1",
        "WS_REDIS_HEALTH_CHECK_SECONDS": "1",
    }
    apps = [AppProcess(env, workdir=tmp_path) for _ in range(2)]
    try:
        start_all(apps)
        async with connect(apps[1].ws, subprotocols=["bearer", token("wes")]) as ws:  # type: ignore[list-item]
            assert json.loads(await ws.recv())["type"] == "hello"
            await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "news"}}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            async with httpx.AsyncClient(timeout=10) as http:
                reply = await http.post(
                    f"{apps[0].base}/ops/broadcast",
                    json={"envelope": {"type": "n", "data": "sharded"}, "topic": "news"},
                )
            assert reply.json() == {"local": 0}
            async with asyncio.timeout(10):
                frame = json.loads(await ws.recv())
            assert frame == {"type": "n", "data": "sharded", "request_id": None}
    finally:
        for app in apps:
            app.stop()


async def test_concurrent_first_commands_on_a_fresh_cluster_client(
    cluster: RedisClusterNodes,
) -> None:
    # redis-py's cluster client, with retries off, used to fail commands that raced its
    # lazy start ("Connection closed by server"): the backplane loads it in start().
    for round_ in range(3):
        fresh = backplane(cluster, f"r{uuid.uuid4().hex[:8]}")
        await fresh.start(f"{round_ + 1:012x}", Recorder())
        try:
            results = await asyncio.gather(
                *(fresh.publish(f"topic:t{i}", b"x") for i in range(10)),
                *(fresh.presence.online_users() for _ in range(10)),
                *(fresh.presence.topic_members(f"t{i}") for i in range(10)),
                *(fresh.presence.is_online(f"u{i}") for i in range(10)),
                return_exceptions=True,
            )
        finally:
            await fresh.stop()
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert results[:10] == [0] * 10
