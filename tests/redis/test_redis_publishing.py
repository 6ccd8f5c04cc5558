"""The publishing side of RedisBackplane and the append queue of RedisHistory, on a real
redis-server: a call made while nothing is in flight is sent by its caller, calls made
meanwhile are queued and pipelined, and either way they reach Redis in call order; a
caller cancelled mid-round, a frozen server and a stopped backplane each end with an
answer, never a hang, and leave the next call working."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tempest_ws.exceptions import BackplaneError
from tempest_ws.history import RedisHistory
from tests.helpers.backplane_nodes import Recorder, redis_backplane
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import until

pytestmark = pytest.mark.redis

GUARD = 20.0  # the test fails, rather than hangs


async def test_sent_and_queued_publishes_arrive_in_call_order(redis: RedisServer) -> None:
    backplane, listener = redis_backplane(redis.url), Recorder()
    await backplane.start("00000000000a", listener)
    try:
        await backplane.subscribe("topic:o")
        expected: list[bytes] = []
        n = 0
        for wave in (1, 7, 1, 1, 64, 3, 1):  # alone: sent by the caller; together: queued
            packets = [str(n + i).encode() for i in range(wave)]
            n += wave
            expected += packets
            counts = await asyncio.gather(*(backplane.publish("topic:o", p) for p in packets))
            assert counts == [1] * wave  # the backplane's own subscription
        await until(lambda: len(listener.on("topic:o")) == len(expected))
        assert listener.on("topic:o") == expected
    finally:
        await backplane.stop()


async def test_a_caller_cancelled_mid_round_leaves_publishing_working(redis: RedisServer) -> None:
    backplane, listener = redis_backplane(redis.url), Recorder()
    await backplane.start("00000000000b", listener)
    try:
        await backplane.subscribe("topic:c")
        sent = asyncio.create_task(backplane.publish("topic:c", b"cut"))
        queued = asyncio.create_task(backplane.publish("topic:c", b"queued"))
        await asyncio.sleep(0)  # the first is written and waits for its answer
        sent.cancel()
        async with asyncio.timeout(GUARD):
            assert await queued == 1
            # No one listens there: 0, not the 1 a reply left over from the cut one says.
            assert await backplane.publish("topic:nobody", b"x") == 0
            assert await backplane.publish("topic:c", b"after") == 1
        await until(lambda: b"after" in listener.on("topic:c"))
        assert listener.on("topic:c")[-2:] == [b"queued", b"after"]
    finally:
        await backplane.stop()


async def test_a_frozen_redis_fails_publishes_within_the_bound(redis: RedisServer) -> None:
    backplane = redis_backplane(redis.url, timeout=0.3)
    await backplane.start("00000000000c", Recorder())
    assert redis.process is not None
    try:
        assert await backplane.publish("topic:f", b"before") == 0
        os.kill(redis.process.pid, signal.SIGSTOP)  # sockets stay open, nothing answers
        try:
            async with asyncio.timeout(GUARD):
                results = await asyncio.gather(
                    *(backplane.publish("topic:f", b"%d" % i) for i in range(5)),
                    return_exceptions=True,
                )
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert all(isinstance(r, BackplaneError) for r in results), results
        async with asyncio.timeout(GUARD):
            assert await backplane.publish("topic:f", b"after") == 0
    finally:
        await backplane.stop()


async def test_stopping_answers_every_publish_waiting_on_a_frozen_redis(
    redis: RedisServer,
) -> None:
    backplane = redis_backplane(redis.url, timeout=5.0, stop_timeout=0.5)
    await backplane.start("00000000000d", Recorder())
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        tasks = [asyncio.create_task(backplane.publish("topic:s", b"%d" % i)) for i in range(20)]
        await asyncio.sleep(0)  # the first is sent, the others wait behind it
        async with asyncio.timeout(GUARD):
            await backplane.stop()
            results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    assert all(isinstance(r, BackplaneError) for r in results), results
    with pytest.raises(BackplaneError, match="not started"):
        await backplane.publish("topic:s", b"late")


async def test_sent_and_queued_appends_take_offsets_in_call_order(redis: RedisServer) -> None:
    store = RedisHistory(redis.url)
    try:
        offsets: list[int] = []
        for wave in (1, 5, 1, 1, 40, 2, 1):  # alone: sent by the caller; together: queued
            got = await asyncio.gather(*(store.append("chat:o", "{}") for _ in range(wave)))
            offsets += [p.offset for p in got]
        assert offsets == list(range(1, len(offsets) + 1))
    finally:
        await store.aclose()


async def test_an_append_cancelled_mid_round_leaves_the_store_working(redis: RedisServer) -> None:
    store = RedisHistory(redis.url)
    try:
        for _ in range(3):
            await store.append("chat:other", "{}")
        sent = asyncio.create_task(store.append("chat:c", '{"n":1}'))
        queued = asyncio.create_task(store.append("chat:c", '{"n":2}'))
        await asyncio.sleep(0)  # the first is written and waits for its answer
        sent.cancel()
        async with asyncio.timeout(GUARD):
            second = await queued
            assert (await store.append("chat:other", "{}")).offset == 4  # not a stale reply
            third = await store.append("chat:c", '{"n":3}')
        # The cut append may or may not have been stored; the others follow it in order.
        assert third.offset == second.offset + 1
        assert second.offset in (1, 2)
        recovery = await store.since("chat:c", 0, third.epoch, limit=10)
        assert [e.frame for e in recovery.entries][-2:] == ['{"n":2}', '{"n":3}']
    finally:
        await store.aclose()


async def test_a_frozen_redis_fails_appends_within_the_bound(redis: RedisServer) -> None:
    store = RedisHistory(redis.url, timeout=0.3)
    assert redis.process is not None
    try:
        await store.append("chat:f", "{}")
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(GUARD):
                results = await asyncio.gather(
                    *(store.append("chat:f", "{}") for _ in range(5)), return_exceptions=True
                )
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert all(isinstance(r, BackplaneError) for r in results), results
        async with asyncio.timeout(GUARD):
            assert (await store.append("chat:f", "{}")).offset >= 2
    finally:
        await store.aclose()


async def test_concurrent_appenders_keep_batching(redis: RedisServer) -> None:
    store = RedisHistory(redis.url)

    async def appender() -> None:
        for _ in range(10):
            await store.append("chat:b", "{}")

    try:
        await store.append("chat:b", "{}")  # a sequential caller: its own round
        with redis.client() as client:
            client.config_resetstat()
        await asyncio.gather(*(appender() for _ in range(16)))
        with redis.client() as client:
            calls = client.info("commandstats")["cmdstat_evalsha"]["calls"]
        # Ten rounds of sixteen appends to one topic, one script call each (plus the
        # first, sent by a caller alone); a caller sending alone each time would make it
        # two calls a round.
        assert calls <= 13, calls
        assert (await store.latest("chat:b")).offset == 161
    finally:
        await store.aclose()
