"""RedisHistory on a real 3-node Redis Cluster: each topic's two keys share a hash slot
(the ``{t:<topic>}`` tag), so its scripts run on the shard owning it, and topics spread
over every shard."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers.redis_server import RedisClusterNodes

pytestmark = pytest.mark.redis


async def test_history_spreads_over_shards_and_recovers_from_any_node(
    cluster: RedisClusterNodes,
) -> None:
    from tempest_ws.history import RedisHistory

    nodes = [RedisHistory(cluster.url, cluster=True, prefix="hc") for _ in range(2)]
    topics = [f"chat:{n}" for n in range(24)]
    try:

        async def publish(store: RedisHistory, topic: str, tag: str) -> list[int]:
            return [(await store.append(topic, f'"{tag}{i}"')).offset for i in range(5)]

        offsets = await asyncio.gather(
            *(publish(store, topic, f"{n}") for topic in topics for n, store in enumerate(nodes))
        )
        for i, topic in enumerate(topics):  # both nodes' appends interleave on one counter
            assert sorted(offsets[2 * i] + offsets[2 * i + 1]) == list(range(1, 11))
            latest = await nodes[1].latest(topic)
            recovery = await nodes[0].since(topic, 3, latest.epoch, limit=10)
            assert recovery.recovered
            assert [e.offset for e in recovery.entries] == list(range(4, 11))

        shards_used = set()
        for node in cluster.nodes:
            with node.client() as client:
                keys = [k.decode() for k in client.keys("hc:history:*")]
            if keys:
                shards_used.add(node.port)
            for key in keys:  # both keys of a topic live together
                assert key[:-2] + (":s" if key.endswith(":m") else ":m") in keys
        assert len(shards_used) == 3
    finally:
        for store in nodes:
            await store.aclose()
