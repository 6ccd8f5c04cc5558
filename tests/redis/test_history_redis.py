"""RedisHistory beyond the contract: pipelined appends, script cache loss, bounded
failures, key layout. Real redis-server, no fakeredis."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tempest_ws.exceptions import BackplaneError
from tempest_ws.history import HistoryPolicy, Position
from tests.helpers.history_support import STAMP_EDGE_FRAMES
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import require_tool

pytestmark = pytest.mark.redis

TOPIC = "chat:1"


def frame(n: int) -> str:
    return f'{{"type":"m","data":{n},"request_id":null}}'


async def test_one_nodes_appends_are_pipelined_in_call_order(redis: RedisServer) -> None:
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url)
    try:
        positions = await asyncio.gather(*(store.append(TOPIC, frame(n)) for n in range(300)))
        assert [p.offset for p in positions] == list(range(1, 301))
        with redis.client() as client:  # the script cache is lost (as after a restart)
            client.script_flush()
        again = await asyncio.gather(*(store.append(TOPIC, frame(n)) for n in range(300, 350)))
        assert [p.offset for p in again] == list(range(301, 351))
        recovery = await store.since(TOPIC, 0, again[0].epoch, limit=400)
        assert [e.frame for e in recovery.entries] == [frame(n) for n in range(350)]
    finally:
        await store.aclose()


async def test_appends_cancelled_before_sending_are_never_stored(redis: RedisServer) -> None:
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url)
    try:
        tasks = [asyncio.create_task(store.append(TOPIC, frame(n))) for n in range(100)]
        await asyncio.sleep(0)  # every task queued its append; the batch is not sent yet
        for task in tasks[50:]:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert [p.offset for p in done[:50]] == list(range(1, 51))  # type: ignore[union-attr]
        assert all(isinstance(r, asyncio.CancelledError) for r in done[50:])
        assert (await store.latest(TOPIC)).offset == 50
    finally:
        await store.aclose()


async def test_max_pending_and_aclose_fail_waiting_appends(redis: RedisServer) -> None:
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url, max_pending=10)
    try:
        # The first is sent by its caller at once; the next ten wait; the last is refused.
        tasks = [asyncio.create_task(store.append(TOPIC, frame(n))) for n in range(12)]
        await asyncio.sleep(0)
        await store.aclose()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[11], BackplaneError)
        assert "already waiting" in str(results[11])
        assert isinstance(results[0], (BackplaneError, Position))  # answered, or cut by aclose
        assert all(isinstance(r, BackplaneError) for r in results[1:11])
        assert (await store.append(TOPIC, frame(1))).offset >= 1  # usable again
    finally:
        await store.aclose()


async def test_unreachable_redis_raises_backplane_error_quickly() -> None:
    require_tool("redis-server")
    from tempest_ws.history import RedisHistory

    server = RedisServer()
    server.start()
    store = RedisHistory(server.url, timeout=0.5)
    try:
        await store.append(TOPIC, frame(1))
        server.stop()
        loop = asyncio.get_running_loop()
        for call in (
            lambda: store.append(TOPIC, frame(2)),
            lambda: store.since(TOPIC, 0, "e", limit=5),
            lambda: store.latest(TOPIC),
            lambda: store.history(TOPIC, limit=5),
        ):
            started = loop.time()
            with pytest.raises(BackplaneError, match="redis history"):
                await call()
            assert loop.time() - started < 5  # bounded by the timeout, not hanging
    finally:
        with contextlib.suppress(Exception):
            await store.aclose()
        server.close()


async def test_redis_keys_have_one_hash_slot_and_expire() -> None:
    require_tool("redis-server")
    from redis.crc import key_slot

    from tempest_ws.history import RedisHistory

    server = RedisServer()
    server.start()
    store = RedisHistory(server.url, prefix="app", policy=HistoryPolicy(max_age=60))
    try:
        for topic in ("chat:1", "}odd{topic}", "{x}"):
            await store.append(topic, frame(1))
            meta, stream = store.keys(topic)
            assert key_slot(meta.encode()) == key_slot(stream.encode()), topic
            with server.client() as client:
                assert 0 < client.pttl(stream) <= 60_000
                assert client.pttl(meta) > 60_000
                assert client.xlen(stream) == 1
        assert repr(store) == "<RedisHistory standalone prefix='app'>"
    finally:
        await store.aclose()
        server.close()


async def test_append_publish_sends_the_packet_encode_packet_would(redis: RedisServer) -> None:
    """The packet built by the script is byte for byte what the hub would build after a
    separate append (unicode, empty and pretty-printed frames, exclusions, trace)."""
    import redis.asyncio as aioredis

    from tempest_ws.backplane.packet import OP_TOPIC, encode_packet, positioned_head
    from tempest_ws.history import RedisHistory, stamp_frame

    store = RedisHistory(redis.url)
    listener = aioredis.Redis.from_url(redis.url)
    pubsub = listener.pubsub()
    await pubsub.subscribe("app:topic:chat:é")
    await pubsub.get_message(timeout=1)  # the confirmation
    heads = [
        {},
        {"exclude": ["n1.c1"], "exclude_users": ["bob"]},
        {"trace": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}},
    ]
    try:
        for options in heads:
            for text in STAMP_EDGE_FRAMES:
                head = positioned_head("0123456789ab", OP_TOPIC, "chat:é", **options)
                position = await store.append_publish("chat:é", text, "app:topic:chat:é", head)
                message = await pubsub.get_message(timeout=2)
                while message is not None and message["type"] != "message":
                    message = await pubsub.get_message(timeout=2)
                assert message is not None
                expected = encode_packet(
                    "0123456789ab",
                    OP_TOPIC,
                    "chat:é",
                    stamp_frame(text, "chat:é", position),
                    position=tuple(position),
                    **options,  # type: ignore[arg-type]
                )
                assert message["data"] == expected
        recovery = await store.since("chat:é", 0, position.epoch, limit=100)
        assert [e.frame for e in recovery.entries] == list(STAMP_EDGE_FRAMES) * len(
            heads
        )  # unstamped
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await store.aclose()


async def test_joined_with_only_a_standalone_backplane_on_the_same_server(
    redis: RedisServer,
) -> None:
    from tempest_ws.backplane import InMemoryBackplane, RedisBackplane
    from tempest_ws.exceptions import ConfigurationError
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url)
    assert store.joined_with(RedisBackplane(redis.url)) is not None
    assert store.joined_with(RedisBackplane(redis.url.replace("/0", "/1"))) is None
    assert store.joined_with(RedisBackplane(redis.url, cluster=True)) is None
    assert store.joined_with(InMemoryBackplane()) is None
    cluster_store = RedisHistory(redis.url, cluster=True)
    assert cluster_store.joined_with(RedisBackplane(redis.url, cluster=True)) is None
    with pytest.raises(ConfigurationError, match="standalone"):
        await cluster_store.append_publish(TOPIC, frame(1), "c", "h")
