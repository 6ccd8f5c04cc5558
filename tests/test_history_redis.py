"""RedisHistory beyond the contract: pipelined appends, script cache loss, bounded
failures, key layout. Real redis-server, no fakeredis."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tempest_ws.exceptions import BackplaneError
from tempest_ws.history import HistoryPolicy
from tests.redis_server import RedisServer
from tests.support import require_tool

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
        tasks = [asyncio.create_task(store.append(TOPIC, frame(n))) for n in range(11)]
        await asyncio.sleep(0)
        await store.aclose()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[10], BackplaneError)
        assert "already waiting" in str(results[10])
        assert all(isinstance(r, BackplaneError) for r in results[:10])
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
