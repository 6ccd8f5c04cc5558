"""Two hubs on one real redis-server, each with its own ``RedisBackplane`` and
``RedisHistory`` (two processes of one deployment): a packet lost between them is filled
from the history, packets out of order are released in offset order, and ``FLUSHALL``
(Redis data loss) answers ``recovered: false`` with a new epoch.

A lost packet is made by appending to the history without publishing (the store has
it, pub/sub never carried it); packets out of order come from a third "node" (a bare
backplane) publishing positioned packets in reverse.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tempest_ws import WebSocketHub, allow_any_topic
from tempest_ws.backplane.packet import OP_TOPIC, encode_packet, topic_channel
from tempest_ws.history import HistoryPolicy, Position, stamp_frame
from tests.helpers.history_support import TOPIC, expect, recoveries
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import connect, frames

pytestmark = pytest.mark.redis

POLICY = HistoryPolicy(topics=("chat:*",), max_messages=100)
Start = Callable[..., Awaitable[WebSocketHub]]


@pytest.fixture
async def start_hub(redis: RedisServer) -> AsyncIterator[Start]:
    from tempest_ws.backplane import RedisBackplane
    from tempest_ws.history import RedisHistory

    hubs: list[WebSocketHub] = []
    with redis.client() as client:
        client.flushall()

    async def start(**options: Any) -> WebSocketHub:
        hub = WebSocketHub(
            backplane=RedisBackplane(redis.url, timeout=1, health_check_interval=1),
            history=RedisHistory(redis.url, policy=POLICY, timeout=1),
            **{"history_gap_timeout": 0.05, "topic_authorizer": allow_any_topic, **options},
        )
        await hub.start()
        hubs.append(hub)
        return hub

    try:
        yield start
    finally:
        for hub in hubs:
            await hub.stop()


def frame(n: int) -> str:
    return json.dumps({"type": "msg", "data": n, "request_id": None}, separators=(",", ":"))


async def test_a_packet_lost_between_nodes_is_filled_from_redis(start_hub: Start) -> None:
    a, b = await start_hub(), await start_hub()
    connection, peer = await connect(a, "ann")
    await a.subscribe(connection.connection_id, TOPIC)
    await b.broadcast({"type": "msg", "data": 1}, topic=TOPIC)
    assert b._history is not None
    await b._history.store.append(TOPIC, frame(2))  # stored, never published
    await b.broadcast({"type": "msg", "data": 3}, topic=TOPIC)
    await expect(peer, ["recovery", "1", "2", "3"])
    assert a.history_stats().gap_messages_filled == 1


async def test_packets_out_of_order_are_released_in_order(
    start_hub: Start, redis: RedisServer
) -> None:
    from tempest_ws.backplane import RedisBackplane

    a, b = await start_hub(history_gap_timeout=30), await start_hub()
    connection, peer = await connect(a, "ann")
    await a.subscribe(connection.connection_id, TOPIC)
    assert b._history is not None
    positions = [await b._history.store.append(TOPIC, frame(n)) for n in (1, 2, 3)]
    other = RedisBackplane(redis.url, timeout=1)
    await other.start("0123456789ab", a._node)  # a listener that is never called here
    try:
        for n, position in reversed(list(zip((1, 2, 3), positions, strict=True))):
            stamped = stamp_frame(frame(n), TOPIC, position)
            packet = encode_packet(
                "0123456789ab", OP_TOPIC, TOPIC, stamped, position=tuple(position)
            )
            await other.publish(topic_channel(TOPIC), packet)
        await expect(peer, ["recovery", "1", "2", "3"])
    finally:
        await other.stop()
    assert a.history_stats().gap_messages_filled == 0


async def test_flushall_answers_recovered_false_with_a_new_epoch(
    start_hub: Start, redis: RedisServer
) -> None:
    a, b = await start_hub(), await start_hub()
    follower, follower_peer = await connect(a, "ann")
    await a.subscribe(follower.connection_id, TOPIC)
    await b.broadcast({"type": "msg", "data": 1}, topic=TOPIC)
    await b.broadcast({"type": "msg", "data": 2}, topic=TOPIC)
    await expect(follower_peer, ["recovery", "1", "2"])
    old = Position(2, recoveries(follower_peer)[0]["epoch"])
    with redis.client() as client:
        client.flushall()
    await b.broadcast({"type": "msg", "data": 3}, topic=TOPIC)  # offset 1 of a new epoch
    await expect(follower_peer, ["recovery", "1", "2", "recovery", "1"])
    notice = recoveries(follower_peer)[1]
    assert (notice["recovered"], notice["offset"]) == (False, 0)
    assert notice["epoch"] > old.epoch
    joiner, joiner_peer = await connect(b, "bob")
    await b.subscribe(joiner.connection_id, TOPIC, position=old, request_id="again")
    await expect(joiner_peer, ["recovery"])
    answer = recoveries(joiner_peer)[0]
    assert answer == {
        "topic": TOPIC,
        "recovered": False,
        "replayed": 0,
        "offset": 1,
        "epoch": notice["epoch"],
        "request_id": "again",
    }


async def test_one_script_appends_and_publishes_in_offset_order(start_hub: Start) -> None:
    """Store and backplane on one standalone server: each message is appended and
    published by one script, so concurrent publishers on two nodes reach a third node's
    subscriber in offset order (nothing held, nothing fetched from the store)."""
    a, b, c = await start_hub(history_gap_timeout=30), await start_hub(), await start_hub()
    for hub in (a, b, c):
        assert hub._history is not None
        assert hub._history.append_publish is not None
    connection, peer = await connect(a, "ann")
    await a.subscribe(connection.connection_id, TOPIC)
    await asyncio.gather(
        *(
            hub.broadcast({"type": "msg", "data": n}, topic=TOPIC)
            for n in range(60)
            for hub in (b, c)
        )
    )
    await expect(peer, ["recovery", *(str(n) for n in range(1, 121))])
    assert a.history_stats().gap_messages_filled == 0
    assert a.history_stats().gap_messages_skipped == 0


async def test_redis_down_delivers_unstamped_here_then_raises(start_hub: Start) -> None:
    from tests.helpers.support import require_tool

    require_tool("redis-server")
    from tempest_ws.backplane import RedisBackplane
    from tempest_ws.exceptions import BackplaneError
    from tempest_ws.history import RedisHistory

    server = RedisServer()
    server.start()
    hub = WebSocketHub(
        backplane=RedisBackplane(server.url, timeout=0.5),
        history=RedisHistory(server.url, policy=POLICY, timeout=0.5),
        topic_authorizer=allow_any_topic,
    )
    try:
        await hub.start()
        connection, peer = await connect(hub, "ann")
        await hub.subscribe(connection.connection_id, TOPIC)
        await hub.broadcast({"type": "msg", "data": 1}, topic=TOPIC)
        server.stop()
        with pytest.raises(BackplaneError):
            await hub.broadcast({"type": "msg", "data": "lost"}, topic=TOPIC)
        await expect(peer, ["recovery", "1", "msg"])
        assert frames(peer)[-1] == {"type": "msg", "data": "lost", "request_id": None}
        assert hub.history_stats().append_failures == 1
    finally:
        await hub.stop()
        server.close()
