"""Realtime features across real processes: ``examples/realtime.py`` in uvicorn processes
joined by one real redis-server, driven by real ``websockets`` clients.

Two nodes (A, B) live for the module; the crash test starts a third (C) and kills it
with SIGKILL by its PID. The test process watches the deployment through a hub of its
own on the same Redis (``is_online``, ``presence``), as any other process would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tempest_ws import WebSocketHub, allow_any_topic
from tempest_ws.backplane import RedisBackplane
from tempest_ws.realtime import PRESENCE_JOIN, PRESENCE_LEAVE
from tests.helpers.realtime_support import Tab, open_tab
from tests.helpers.redis_server import RedisServer
from tests.helpers.scaleout_app import AppProcess, start_all
from tests.helpers.support import SECRET, require_tool, until_async

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

APP = "examples.realtime:create_app"
TTL = 2.0  # WS_REDIS_PRESENCE_TTL_SECONDS: a silent node is dead after this long


class Deployment:
    def __init__(self, redis: RedisServer, env: dict[str, str], workdir: Path) -> None:
        self.redis = redis
        self.env = env
        self.workdir = workdir
        self.apps: list[AppProcess] = []

    def base(self, index: int) -> str:
        return self.apps[index].base


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_tool("redis-server")
    redis = RedisServer()
    redis.start()
    env = {
        "WS_JWT_SECRET": SECRET,
        "WS_REDIS_URL": redis.url,
        "WS_REDIS_CHANNEL_PREFIX": f"rt{uuid.uuid4().hex[:8]}",
        "WS_REDIS_TIMEOUT_SECONDS": "1",
        "WS_REDIS_HEALTH_CHECK_SECONDS": "1",
        "WS_REDIS_RECONNECT_MAX_SECONDS": "0.5",
        "WS_REDIS_PRESENCE_TTL_SECONDS": str(TTL),
    }
    cluster = Deployment(redis, env, Path(tmp_path_factory.mktemp("realtime")))
    cluster.apps = [AppProcess(env, app=APP, workdir=cluster.workdir) for _ in range(2)]
    try:
        start_all(cluster.apps)
        yield cluster
    finally:
        for app in cluster.apps:
            app.stop()
        redis.close()


@pytest.fixture
async def watcher(deployment: Deployment) -> AsyncIterator[WebSocketHub]:
    """A hub of the test process on the same Redis: a node that holds no connection."""
    backplane = RedisBackplane(
        deployment.redis.url,
        channel_prefix=deployment.env["WS_REDIS_CHANNEL_PREFIX"],
        timeout=1.0,
        presence_ttl=TTL,
    )
    hub = WebSocketHub(backplane=backplane, presence=True, topic_authorizer=allow_any_topic)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def online(hub: WebSocketHub, user: str) -> bool:
    return await hub.is_online(user)


async def offline(hub: WebSocketHub, user: str) -> bool:
    return not await hub.is_online(user)


def room() -> str:
    return f"room:r{uuid.uuid4().hex[:8]}"


async def acked(tab: Tab, count: int = 1) -> None:
    await tab.wait(lambda: len(tab.of("ack")) >= count)


async def test_two_tabs_on_two_processes_make_one_join_and_one_leave(
    deployment: Deployment, watcher: WebSocketHub
) -> None:
    topic = room()
    a, b = deployment.base(0), deployment.base(1)
    async with open_tab(b, "olga", topics=topic) as observer:
        await acked(observer)
        async with open_tab(a, "alice", topics=topic) as tab1:
            await acked(tab1)
            async with open_tab(b, "alice", topics=topic) as tab2:
                await acked(tab2)
                await observer.wait(lambda: bool(observer.of(PRESENCE_JOIN)))
                users = await observer.request("presence.get", {"topic": topic}, rid="p1")
                assert users["data"]["users"] == ["alice", "olga"]
            # tab2 (on B) closed; a later join published by the same node is the barrier
            async with open_tab(b, "carl", topics=topic):
                await observer.wait(lambda: len(observer.of(PRESENCE_JOIN)) == 2)
                assert observer.of(PRESENCE_LEAVE) == []
                await until_async(lambda: online(watcher, "alice"), timeout=10.0)
                assert await watcher.presence(topic) == {"alice", "carl", "olga"}
            await observer.wait(lambda: len(observer.of(PRESENCE_LEAVE)) == 1)
        await observer.wait(lambda: len(observer.of(PRESENCE_LEAVE)) == 2)
        # and a last barrier: nothing more about alice after her one leave
        async with open_tab(a, "dora", topics=topic):
            await observer.wait(lambda: len(observer.of(PRESENCE_JOIN)) == 3)
        assert observer.of(PRESENCE_JOIN) == [
            {"topic": topic, "user_id": "alice"},
            {"topic": topic, "user_id": "carl"},
            {"topic": topic, "user_id": "dora"},
        ]
        assert [e["user_id"] for e in observer.of(PRESENCE_LEAVE)][:2] == ["carl", "alice"]
        assert observer.of(PRESENCE_LEAVE).count({"topic": topic, "user_id": "alice"}) == 1
    await until_async(lambda: offline(watcher, "alice"), timeout=10.0)


async def test_typing_and_receipts_cross_processes_and_skip_the_sender(
    deployment: Deployment,
) -> None:
    topic = room()
    a, b = deployment.base(0), deployment.base(1)
    async with (
        open_tab(a, "alice", topics=topic) as alice,
        open_tab(b, "bob", topics=topic) as bob,
        open_tab(b, "carol", topics=room()) as carol,
    ):
        for tab in (alice, bob, carol):
            await acked(tab)
        await alice.request("typing", {"topic": topic, "typing": True}, rid="t1")
        await bob.wait(lambda: bool(bob.of("typing")))
        assert bob.of("typing") == [{"topic": topic, "user_id": "alice", "typing": True}]
        receipt = {"topic": topic, "message_id": 42, "status": "delivered"}
        await bob.request("receipt", receipt, rid="r1")
        await alice.wait(lambda: bool(alice.of("receipt")))
        assert alice.of("receipt") == [{**receipt, "user_id": "bob"}]
        # barrier: a chat line from each node reaches both, after their own events
        await alice.request("chat.send", {"room": topic[5:], "text": "x"}, rid="c1")
        await bob.request("chat.send", {"room": topic[5:], "text": "y"}, rid="c2")
        await alice.wait(lambda: len(alice.of("chat.message")) == 2)
        await bob.wait(lambda: len(bob.of("chat.message")) == 2)
        assert alice.of("typing") == []
        assert bob.of("receipt") == []
        assert carol.of("typing") == carol.of("receipt") == carol.of("chat.message") == []


async def test_a_killed_process_users_leave_within_the_expiry(
    deployment: Deployment, watcher: WebSocketHub
) -> None:
    topic = room()
    doomed = AppProcess(deployment.env, app=APP, workdir=deployment.workdir)
    await asyncio.to_thread(start_all, [doomed])  # it polls with sleeps: not on the loop
    try:
        async with (
            open_tab(deployment.base(0), "olga", topics=topic) as observer,
            open_tab(doomed.base, "dave", topics=topic) as dave,
        ):
            await acked(dave)
            await observer.wait(lambda: bool(observer.of(PRESENCE_JOIN)))
            await until_async(lambda: online(watcher, "dave"), timeout=10.0)
            assert doomed.process is not None
            doomed.process.kill()  # SIGKILL by PID: no close frame, no cleanup
            await asyncio.to_thread(doomed.process.wait, 10)
            await dave.closed()
            # Within the TTL (plus a heartbeat of the node that reaps it): bounded wait.
            await observer.wait(lambda: bool(observer.of(PRESENCE_LEAVE)), limit=TTL * 5 + 10)
            assert observer.of(PRESENCE_LEAVE) == [{"topic": topic, "user_id": "dave"}]
            assert not await watcher.is_online("dave")
            assert await watcher.presence(topic) == {"olga"}
            answer = await observer.request("presence.get", {"topic": topic}, rid="p")
            assert answer["data"]["users"] == ["olga"]
    finally:
        doomed.stop()
