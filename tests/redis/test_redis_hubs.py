"""Several hubs in one process, joined by an in-memory bus or by a real redis-server.

The hub-level semantics of scale-out (exactly once, exclusions, routing to the owning
node, revocation, the cluster-wide cap, channel interest) checked in milliseconds against
both backplanes, plus what only Redis can show: settings wiring, lazy import, the
half-open link caught by the health check, and publishing during an outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tempest_ws import BackplaneError, CloseCode, MissingDependencyError, WebSocketHub
from tempest_ws.backplane import Backplane, InMemoryBackplane, InMemoryBus
from tests.helpers.backplane_nodes import redis_backplane
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import connect, make_settings, notes, require_tool, until

HubFactory = Callable[..., Awaitable[WebSocketHub]]


def _redis_backplane(server: RedisServer) -> Backplane:
    return redis_backplane(server.url, timeout=0.5, health_check_interval=0.5)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def start_hub(request: pytest.FixtureRequest) -> AsyncIterator[HubFactory]:
    hubs: list[WebSocketHub] = []
    server: RedisServer | None = None
    bus = InMemoryBus()
    if request.param == "redis":
        require_tool("redis-server")
        server = RedisServer()
        server.start()

    async def start(**options: Any) -> WebSocketHub:
        backplane = InMemoryBackplane(bus) if server is None else _redis_backplane(server)
        hub = WebSocketHub(backplane=backplane, **options)
        await hub.start()
        hubs.append(hub)
        return hub

    try:
        yield start
    finally:
        for hub in hubs:
            await hub.stop()
        if server is not None:
            server.close()


async def test_every_operation_reaches_other_nodes_exactly_once(start_hub: HubFactory) -> None:
    a, b = await start_hub(), await start_hub()
    ann_a, pa = await connect(a, "ann")
    ann_b, pb = await connect(b, "ann")
    bo_b, pbo = await connect(b, "bo")
    for hub, connection in ((a, ann_a), (b, ann_b), (b, bo_b)):
        assert await hub.subscribe(connection.connection_id, "room")

    assert await a.broadcast({"type": "n", "data": 1}, topic="room") == 1
    assert await b.broadcast({"type": "n", "data": 2}, exclude_users="ann") == 1
    assert await a.broadcast({"type": "n", "data": 3}, exclude=ann_b.connection_id) == 1
    assert await a.send_to("ann", {"type": "n", "data": 4}) == 1
    assert await a.send_to_connection(bo_b.connection_id, {"type": "n", "data": 5})
    assert await b.broadcast({"type": "n", "data": 6}) == 2
    await until(lambda: 6 in notes(pa) and 6 in notes(pb) and 6 in notes(pbo))
    assert sorted(notes(pa)) == [1, 3, 4, 6]
    assert sorted(notes(pb)) == [1, 4, 6]
    assert sorted(notes(pbo)) == [1, 2, 3, 5, 6]
    assert a.cluster_stats().packets_received >= 2


async def test_disconnect_user_and_cap_reach_the_node_holding_the_victim(
    start_hub: HubFactory,
) -> None:
    a, b = await start_hub(max_per_user=2), await start_hub(max_per_user=2)
    oldest, p_oldest = await connect(a, "cy")
    await connect(b, "cy")
    await connect(b, "cy")  # third tab on b: the oldest, on a, goes
    await oldest.wait_closed()
    assert p_oldest.close_codes() == [CloseCode.TOO_MANY_CONNECTIONS]
    assert b.stats().evicted_over_user_cap == 1

    assert await a.disconnect_user("cy") == 0
    await until(lambda: b.stats().connections == 0)
    assert await _eventually_offline(a, "cy")


async def _eventually_offline(hub: WebSocketHub, user: str) -> bool:
    """Poll ``is_online`` (leaves are applied asynchronously): 500 rounds, 10 ms apart."""
    for _ in range(500):
        if not await hub.is_online(user):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_node_subscribes_only_while_local_connections_need_a_channel(
    start_hub: HubFactory,
) -> None:
    a = await start_hub()
    base = a.cluster_stats().channels  # "all" and this node's own channel
    assert base == 2
    first, _ = await connect(a, "dee")
    second, _ = await connect(a, "dee")
    assert a.cluster_stats().channels == base + 1  # user:dee
    await a.subscribe(first.connection_id, "t")
    await a.subscribe(second.connection_id, "t")
    assert a.cluster_stats().channels == base + 2  # + topic:t, once
    await first.close()
    assert a.cluster_stats().channels == base + 2
    await second.close()
    assert a.cluster_stats().channels == base


async def test_the_hub_starts_lazily_and_concurrently_once() -> None:
    starts = 0
    backplane = InMemoryBackplane()
    original = backplane.start

    async def counting_start(*args: Any) -> None:
        nonlocal starts
        starts += 1
        await original(*args)

    backplane.start = counting_start  # type: ignore[method-assign,assignment]
    hub = WebSocketHub(backplane=backplane)
    await asyncio.gather(hub.broadcast({"type": "n"}), hub.online_users(), hub.start())
    assert starts == 1
    await hub.stop()
    await hub.stop()
    assert not hub.cluster_stats().connected
    await hub.start()  # and again after a stop
    assert starts == 2
    await hub.stop()


def test_from_settings_wires_every_redis_setting() -> None:
    from tempest_ws.backplane import RedisBackplane

    settings = make_settings(
        WS_REDIS_URL="redis://127.0.0.1:6390/2",
        WS_REDIS_CLUSTER=True,
        WS_REDIS_CHANNEL_PREFIX="app1",
        WS_REDIS_TIMEOUT_SECONDS=3,
        WS_REDIS_HEALTH_CHECK_SECONDS=7,
        WS_REDIS_RECONNECT_MAX_SECONDS=9,
        WS_REDIS_PRESENCE_TTL_SECONDS=11,
        WS_REDIS_MAX_PENDING_PUBLISHES=13,
    )
    hub = WebSocketHub.from_settings(settings)
    backplane = hub.backplane
    assert isinstance(backplane, RedisBackplane)
    assert backplane.url == "redis://127.0.0.1:6390/2"
    assert backplane.cluster is True
    assert backplane.channel_prefix == "app1"
    assert backplane.timeout == 3
    assert backplane.health_check_interval == 7
    assert backplane.reconnect_max == 9
    assert backplane.presence._ttl == 11
    assert backplane.max_pending == 13
    assert "6390" not in repr(backplane)  # the URL may carry a password
    assert isinstance(WebSocketHub.from_settings(make_settings()).backplane, InMemoryBackplane)


def test_import_is_cheap_and_a_missing_redis_names_the_extra() -> None:
    code = (
        "import sys, tempest_ws\n"
        "assert 'redis' not in sys.modules, 'tempest_ws imported redis'\n"
        "sys.modules['redis'] = None\n"
        "from tempest_ws import MissingDependencyError\n"
        "try:\n"
        "    from tempest_ws.backplane import RedisBackplane\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc.package, exc.extra)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["redis", "redis"]
    assert issubclass(MissingDependencyError, ImportError)


@pytest.mark.redis
async def test_a_half_open_link_is_caught_by_the_health_check(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tempest_ws.backplane")
    a = WebSocketHub(backplane=_redis_backplane(redis))
    b = WebSocketHub(backplane=_redis_backplane(redis))
    await a.start()
    await b.start()
    try:
        _, peer = await connect(b, "eve")
        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGSTOP)  # sockets stay open, nothing answers
        try:
            await until(lambda: not b.cluster_stats().connected, 10)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        await until(lambda: b.cluster_stats().connected and a.cluster_stats().connected, 15)
        await until(lambda: any('"resync"' in t for t in peer.texts()), 5)
        assert b.cluster_stats().epoch > 0
        messages = [r.getMessage() for r in caplog.records if r.name == "tempest_ws.backplane"]
        assert any("half-open" in m for m in messages), messages
        assert any("recovered" in m for m in messages), messages
        await a.send_to("eve", {"type": "n", "data": "back"})
        await until(lambda: "back" in notes(peer), 5)
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.redis
async def test_publishing_during_an_outage_delivers_locally_then_raises(
    redis: RedisServer,
) -> None:
    hub = WebSocketHub(backplane=_redis_backplane(redis))
    await hub.start()
    try:
        _, peer = await connect(hub, "fay")
        redis.stop()
        with pytest.raises(BackplaneError):
            await hub.send_to("fay", {"type": "n", "data": "local"})
        await until(lambda: "local" in notes(peer), 5)
        assert hub.cluster_stats().publish_errors == 1
        with pytest.raises(BackplaneError):
            await hub.online_users()
        redis.start()
        await until(lambda: hub.cluster_stats().connected, 10)
        assert await hub.online_users() == {"fay"}
    finally:
        await hub.stop()
