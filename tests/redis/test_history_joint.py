"""The publishing path of a hub on ``RedisHistory`` and a ``RedisBackplane`` on one server:
the joint append-and-publish a hub gets from ``joined_with()`` (arguments kept per topic)
and the append task's script calls on its kept connection. Real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from tempest_ws.exceptions import BackplaneError
from tests.helpers.history_support import STAMP_EDGE_FRAMES
from tests.helpers.redis_server import RedisServer

pytestmark = pytest.mark.redis

TOPICS = ("chat:é", "chat:2")


def frame(n: int) -> str:
    return f'{{"type":"m","data":{n},"request_id":null}}'


async def test_the_joint_publishes_what_encode_packet_would_whatever_the_head(
    redis: RedisServer,
) -> None:
    """Two topics, heads with and without exclusions in turn (the kept arguments of a
    topic are replaced when its head changes), compact frames and frames the joint hands
    to ``append_publish`` (empty, pretty-printed): every packet is byte for byte what
    ``encode_packet`` gives, every frame is stored unstamped, offsets are consecutive."""
    import redis.asyncio as aioredis

    from tempest_ws.backplane import RedisBackplane
    from tempest_ws.backplane.packet import OP_TOPIC, encode_packet, positioned_head, topic_channel
    from tempest_ws.history import RedisHistory, stamp_frame

    store = RedisHistory(redis.url)
    backplane = RedisBackplane(redis.url)
    joint = store.joined_with(backplane)
    assert joint is not None
    listener = aioredis.Redis.from_url(redis.url)
    pubsub = listener.pubsub()
    for topic in TOPICS:
        await pubsub.subscribe(backplane.redis_channel(topic_channel(topic)))
        await pubsub.get_message(timeout=1)  # the confirmation
    heads = [{}, {"exclude": ["n1.c1"], "exclude_users": ["bob"]}, {}]
    try:
        for options in heads:
            for text in STAMP_EDGE_FRAMES:
                for topic in TOPICS:
                    head = positioned_head("0123456789ab", OP_TOPIC, topic, **options)
                    position = await joint(topic, text, topic_channel(topic), head)
                    message = await pubsub.get_message(timeout=2)
                    while message is not None and message["type"] != "message":
                        message = await pubsub.get_message(timeout=2)
                    assert message is not None
                    assert message["data"] == encode_packet(
                        "0123456789ab",
                        OP_TOPIC,
                        topic,
                        stamp_frame(text, topic, position),
                        position=tuple(position),
                        **options,  # type: ignore[arg-type]
                    )
        for topic in TOPICS:
            latest = await store.latest(topic)
            assert latest.offset == len(heads) * len(STAMP_EDGE_FRAMES)
            recovery = await store.since(topic, 0, latest.epoch, limit=100)
            assert [e.offset for e in recovery.entries] == list(range(1, latest.offset + 1))
            assert [e.frame for e in recovery.entries] == list(STAMP_EDGE_FRAMES) * len(heads)
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await store.aclose()


async def test_the_joint_checks_its_arguments(redis: RedisServer) -> None:
    from tempest_ws.backplane import RedisBackplane
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url)
    joint = store.joined_with(RedisBackplane(redis.url))
    assert joint is not None
    try:
        with pytest.raises(ValueError, match="topic"):
            await joint("", frame(1), "topic:", "h")
        with pytest.raises(ValueError, match="JSON object"):
            await joint("chat:1", "[1]", "topic:chat:1", "h")
        assert (await store.latest("chat:1")).offset == 0  # nothing was stored
    finally:
        await store.aclose()


async def test_a_killed_connection_fails_its_append_and_the_next_one_reconnects(
    redis: RedisServer,
) -> None:
    """Redis closes the append task's connection: the next append fails at once with
    ``BackplaneError`` and is not stored (appends are never retried); the one after
    reconnects and takes the next offset."""
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url)
    try:
        first = await store.append("chat:1", frame(1))
        with redis.client() as client:
            killed = int(client.execute_command("CLIENT", "KILL", "TYPE", "normal"))
        assert killed >= 1
        with pytest.raises(BackplaneError, match="redis history append failed"):
            await store.append("chat:1", frame(2))
        again = await store.append("chat:1", frame(3))
        assert again.offset == first.offset + 1
        recovery = await store.since("chat:1", 0, again.epoch, limit=10)
        assert [e.frame for e in recovery.entries] == [frame(1), frame(3)]
    finally:
        await store.aclose()


async def test_sequential_appends_reload_a_lost_script_on_their_connection(
    redis: RedisServer,
) -> None:
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url)
    try:
        for n in range(1, 4):
            assert (await store.append("chat:1", frame(n))).offset == n
            with redis.client() as client:  # the script cache is lost (as after a restart)
                client.script_flush()
        positions = await asyncio.gather(*(store.append("chat:1", frame(n)) for n in range(4, 9)))
        assert [p.offset for p in positions] == list(range(4, 9))
    finally:
        await store.aclose()


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    from redis.asyncio.connection import Connection

    from tempest_ws.backplane._redis_rounds import packed

    args = [b"EVALSHA", b"a" * 40, b"2", b"k:{t:x}:m", b"", "é✓".encode(), b"x" * 7000]
    assert packed(args) == b"".join(Connection().pack_command(*args))
