"""RedisHistory sends consecutive appends of one topic in one script call: offsets,
order, publishes and failures stay per append. Real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from tempest_ws.exceptions import BackplaneError
from tempest_ws.history import HistoryPolicy, Position
from tempest_ws.history._redis_appends import Append, runs
from tests.helpers.redis_server import RedisServer

pytestmark = pytest.mark.redis


def frame(n: int) -> str:
    return f'{{"type":"m","data":{n},"request_id":null}}'


def test_runs_join_consecutive_appends_of_one_topic_and_kind() -> None:
    loop = asyncio.new_event_loop()
    try:
        a, b = (b"a:m", b"a:s"), (b"b:m", b"b:s")
        plain, published = [b"f"], [b"f", b"c", b"h", b"p"]

        def item(keys: tuple[bytes, bytes], fields: list[bytes]) -> Append:
            return (keys, fields, loop.create_future())

        batch = [
            item(a, plain),
            item(a, plain),
            item(b, plain),
            item(a, published),
            item(a, published),
            item(a, plain),
        ]
        assert [(keys, count, len(args)) for keys, args, count in runs(batch)] == [
            (a, 2, 2),
            (b, 1, 1),
            (a, 2, 8),
            (a, 1, 1),
        ]
        assert batch[0][1] == plain  # the queued arguments are not changed
    finally:
        loop.close()


async def test_interleaved_topics_and_kinds_keep_call_order_per_topic(redis: RedisServer) -> None:
    import redis.asyncio as aioredis

    from tempest_ws.backplane.packet import OP_TOPIC, decode_packet, positioned_head
    from tempest_ws.history import RedisHistory, stamp_frame

    store = RedisHistory(redis.url, policy=HistoryPolicy(max_age=60))
    listener = aioredis.Redis.from_url(redis.url)
    pubsub = listener.pubsub()
    await pubsub.subscribe("chan:a")
    await pubsub.get_message(timeout=1)  # the confirmation
    head = positioned_head("0123456789ab", OP_TOPIC, "chat:a")
    try:
        calls = []
        for n in range(300):
            if n % 5 == 4:
                calls.append(store.append("chat:b", frame(n)))
            elif n % 3 == 0:
                calls.append(store.append("chat:a", frame(n)))
            else:
                calls.append(store.append_publish("chat:a", frame(n), "chan:a", head))
        positions = await asyncio.gather(*calls)
        for topic in ("chat:a", "chat:b"):
            mine = [(n, p) for n, p in enumerate(positions) if (n % 5 == 4) == (topic == "chat:b")]
            assert [p.offset for _, p in mine] == list(range(1, len(mine) + 1))
            assert len({p.epoch for _, p in mine}) == 1
            page = await store.history(topic, limit=1000)
            assert [e.frame for e in page.entries] == [frame(n) for n, _ in mine]
        published = [(n, p) for n, p in enumerate(positions) if n % 5 != 4 and n % 3 != 0]
        for n, position in published:
            message = await pubsub.get_message(timeout=2)
            while message is not None and message["type"] != "message":
                message = await pubsub.get_message(timeout=2)
            assert message is not None
            packet = decode_packet(message["data"])
            assert packet.position == tuple(position)
            assert packet.frame == stamp_frame(frame(n), "chat:a", position)
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await store.aclose()


async def test_a_lost_script_cache_is_reloaded_for_a_pipelined_batch(redis: RedisServer) -> None:
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url)
    try:
        await store.append("chat:a", frame(0))
        with redis.client() as client:
            client.script_flush()
        topics = ["chat:a", "chat:b"] * 50
        positions = await asyncio.gather(*(store.append(t, frame(n)) for n, t in enumerate(topics)))
        assert [p.offset for p in positions[0::2]] == list(range(2, 52))
        assert [p.offset for p in positions[1::2]] == list(range(1, 51))
    finally:
        await store.aclose()


async def test_a_failing_call_fails_only_its_own_appends(redis: RedisServer) -> None:
    """The stream key of one topic holds a string (an operator's mistake): its appends
    fail with BackplaneError; the other topic's appends, in the same batch, succeed."""
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url)
    _, broken_stream = store.keys("chat:broken")
    try:
        await store.append("chat:broken", frame(0))
        with redis.client() as client:
            client.delete(broken_stream)
            client.set(broken_stream, "not a stream")
        topics = ["chat:ok", "chat:ok", "chat:broken", "chat:broken", "chat:ok"]
        done = await asyncio.gather(
            *(store.append(t, frame(n)) for n, t in enumerate(topics)), return_exceptions=True
        )
        assert done[0] == Position(1, done[0].epoch)  # type: ignore[union-attr]
        assert done[1] == Position(2, done[0].epoch)  # type: ignore[union-attr]
        assert done[4] == Position(3, done[0].epoch)  # type: ignore[union-attr]
        assert all(isinstance(r, BackplaneError) for r in done[2:4])
    finally:
        await store.aclose()
