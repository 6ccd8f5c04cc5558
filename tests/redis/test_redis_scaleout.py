"""Scale-out across real processes: three uvicorn nodes of one app, one real redis-server,
real ``websockets`` clients.

The nodes and Redis are started once for the module (startup is the slow part); each
test uses its own users and topics. Fault tests put Redis back before they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tempest_ws import CloseCode
from tests.helpers.redis_server import RedisServer
from tests.helpers.scaleout_app import AppProcess, start_all
from tests.helpers.support import SECRET, require_tool, token

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

QUIET = 0.5  # seconds without a duplicate after the last expected frame


class Nodes:
    """Redis and three app processes (A, B, C)."""

    def __init__(self, redis: RedisServer, apps: list[AppProcess]) -> None:
        self.redis = redis
        self.apps = apps

    def __getitem__(self, index: int) -> AppProcess:
        return self.apps[index]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    require_tool("redis-server")
    redis = RedisServer()
    redis.start()
    workdir = Path(tmp_path_factory.mktemp("scaleout"))
    env = {
        "WS_JWT_SECRET": SECRET,
        "WS_REDIS_URL": redis.url,
        "WS_REDIS_CHANNEL_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "WS_REDIS_TIMEOUT_SECONDS": "1",
        "WS_REDIS_HEALTH_CHECK_SECONDS": "1",
        "WS_REDIS_RECONNECT_MAX_SECONDS": "0.5",
        "WS_REDIS_PRESENCE_TTL_SECONDS": "3",
        "WS_MAX_CONNECTIONS_PER_USER": "2",
    }
    apps = [AppProcess(env, workdir=workdir) for _ in range(3)]
    try:
        start_all(apps)
        yield Nodes(redis, apps)
    finally:
        for app in apps:
            app.stop()
        redis.close()


class Client:
    """A real WebSocket client that records every envelope and the close code."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.connection_id = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    def data_of(self, kind: str) -> list[Any]:
        return [f["data"] for f in self.frames if f["type"] == kind]

    async def wait(self, check: Callable[[], bool], limit: float = 10.0) -> None:
        await until(check, limit)

    async def subscribe(self, topic: str) -> None:
        await self.ws.send(json.dumps({"type": "subscribe", "data": {"topic": topic}}))
        await self.wait(lambda: {"topic": topic} in self.data_of("subscribed"))

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def until(check: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``check`` every 10 ms, for at most ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while not check():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def client(app: AppProcess, user: str) -> AsyncIterator[Client]:
    async with connect(app.ws, subprotocols=["bearer", token(user)]) as ws:  # type: ignore[list-item]
        c = Client(ws)
        await c.wait(lambda: bool(c.data_of("hello")))
        c.connection_id = c.data_of("hello")[0]["connection_id"]
        try:
            yield c
        finally:
            await c.close()


async def op(app: AppProcess, name: str, expect: int = 200, **body: Any) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{app.base}/ops/{name}", json=body)
    assert response.status_code == expect, response.text
    return response.json()


async def get(app: AppProcess, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{app.base}{path}", params=params)
    return response.json()


def message(marker: str) -> dict[str, Any]:
    return {"type": "note", "data": {"id": marker}}


def ids(c: Client) -> list[str]:
    return [d["id"] for d in c.data_of("note")]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_topic_user_global_and_exclude_delivery_exactly_once(nodes: Nodes) -> None:
    alice, bob, carol, room = unique("alice"), unique("bob"), unique("carol"), unique("room")
    async with (
        client(nodes[0], alice) as alice_a,
        client(nodes[1], bob) as bob_b,
        client(nodes[2], carol) as carol_c,
        client(nodes[2], alice) as alice_c,
    ):
        for c in (alice_a, bob_b, alice_c):
            await c.subscribe(room)
        everyone = (alice_a, bob_b, carol_c, alice_c)

        # topic, published on A: subscribers on A, B and C, not carol
        assert await op(nodes[0], "broadcast", envelope=message("t1"), topic=room) == {"local": 1}
        # global from B, excluding bob's connection and carol's user
        await op(
            nodes[1],
            "broadcast",
            envelope=message("g1"),
            exclude=[bob_b.connection_id],
            exclude_users=[carol],
        )
        # every tab of alice (A and C), sent from B
        await op(nodes[1], "send_to", user=alice, envelope=message("u1"))
        # one connection on C, sent from A
        sent = await op(
            nodes[0],
            "send_to_connection",
            connection_id=alice_c.connection_id,
            envelope=message("c1"),
        )
        assert sent == {"sent": True}
        # a marker everyone gets last: once it arrived, everything before it did
        await op(nodes[2], "broadcast", envelope=message("end"))
        for c in everyone:
            await c.wait(lambda c=c: "end" in ids(c))  # type: ignore[misc]
        await asyncio.sleep(QUIET)  # duplicates would show up here

        # Exactly these, each once. (Order across publishers is not defined: a node
        # delivers its own publish at once, before frames still on their way to it.)
        assert sorted(ids(alice_a)) == sorted(["t1", "g1", "u1", "end"])
        assert sorted(ids(bob_b)) == sorted(["t1", "end"])
        assert ids(carol_c) == ["end"]
        assert sorted(ids(alice_c)) == sorted(["t1", "g1", "u1", "c1", "end"])


async def test_disconnect_user_closes_tabs_on_every_node(nodes: Nodes) -> None:
    dave, erin = unique("dave"), unique("erin")
    async with (
        client(nodes[0], dave) as dave_a,
        client(nodes[1], dave) as dave_b,
        client(nodes[1], erin) as erin_b,
    ):
        assert await op(nodes[2], "disconnect_user", user=dave) == {"local": 0}
        await dave_a.wait(lambda: dave_a.close_code is not None)
        await dave_b.wait(lambda: dave_b.close_code is not None)
        assert dave_a.close_code == dave_b.close_code == CloseCode.UNAUTHORIZED
        assert erin_b.close_code is None


async def test_per_user_cap_is_cluster_wide_and_evicts_the_oldest(nodes: Nodes) -> None:
    frank = unique("frank")  # WS_MAX_CONNECTIONS_PER_USER=2 on every node
    async with (
        client(nodes[0], frank) as first,
        client(nodes[1], frank) as second,
        client(nodes[2], frank) as third,
    ):
        await first.wait(lambda: first.close_code is not None)
        assert first.close_code == CloseCode.TOO_MANY_CONNECTIONS
        async with client(nodes[0], frank) as fourth:
            await second.wait(lambda: second.close_code is not None)
            assert second.close_code == CloseCode.TOO_MANY_CONNECTIONS
            assert third.close_code is None
            assert fourth.close_code is None


async def test_online_users_span_every_node(nodes: Nodes) -> None:
    gina = unique("gina")
    async with client(nodes[1], gina):
        assert gina in (await get(nodes[0], "/ops/online"))["users"]
        assert (await get(nodes[2], "/ops/online", user=gina)) == {"online": True}
    for _ in range(500):  # the leave is applied asynchronously on B: poll, bounded
        if (await get(nodes[0], "/ops/online", user=gina)) == {"online": False}:
            break
        await asyncio.sleep(0.01)
    assert (await get(nodes[0], "/ops/online", user=gina)) == {"online": False}
    assert gina not in (await get(nodes[2], "/ops/online"))["users"]


async def _delivery_resumes(nodes: Nodes, topic: str, receivers: list[Client]) -> None:
    """Publish from A until every receiver (on B and C) got a frame: bounded, 10 s."""
    for attempt in range(100):
        marker = f"probe-{attempt}"
        with contextlib.suppress(AssertionError):
            await op(nodes[0], "broadcast", envelope=message(marker), topic=topic)
        with contextlib.suppress(TimeoutError):
            await until(lambda m=marker: all(m in ids(r) for r in receivers), 0.1)  # type: ignore[misc]
            return
    raise AssertionError("delivery did not resume within 100 probes")


async def _all_resynced(receivers: list[Client], before: list[int]) -> None:
    pairs = list(zip(receivers, before, strict=True))
    await until(lambda: all(len(r.data_of("resync")) > n for r, n in pairs))


@pytest.mark.parametrize("fault", ["client kill pubsub", "redis restart"])
async def test_delivery_resumes_after_a_redis_fault_and_clients_get_resync(
    nodes: Nodes, fault: str
) -> None:
    topic = unique("resilient")
    async with (
        client(nodes[0], unique("h")) as on_a,
        client(nodes[1], unique("i")) as on_b,
        client(nodes[2], unique("j")) as on_c,
    ):
        everyone = [on_a, on_b, on_c]
        for c in everyone:
            await c.subscribe(topic)
        before = [len(c.data_of("resync")) for c in everyone]
        if fault == "redis restart":
            nodes.redis.restart()
        else:
            assert nodes.redis.kill_pubsub_clients() >= 3
        await _all_resynced(everyone, before)
        for c in everyone:
            resync = c.data_of("resync")[-1]
            assert resync["epoch"] > 0
            assert resync["reason"] == "backplane"
        await _delivery_resumes(nodes, topic, [on_b, on_c])
        # steady state again: exactly once
        await op(nodes[0], "broadcast", envelope=message("after"), topic=topic)
        await until(lambda: all("after" in ids(c) for c in everyone))
        await asyncio.sleep(QUIET)
        for c in everyone:
            assert ids(c).count("after") == 1


async def test_publish_while_redis_is_down_delivers_locally_then_raises(nodes: Nodes) -> None:
    topic = unique("outage")
    async with client(nodes[0], unique("k")) as on_a, client(nodes[1], unique("l")) as on_b:
        await on_a.subscribe(topic)
        await on_b.subscribe(topic)
        nodes.redis.stop()
        try:
            failed = await op(
                nodes[0], "broadcast", expect=503, envelope=message("lost"), topic=topic
            )
            assert failed["error"] == "BackplaneError"
            await on_a.wait(lambda: "lost" in ids(on_a))  # local delivery happened first
        finally:
            nodes.redis.start()
        await _all_resynced([on_a, on_b], [0, 0])
        await _delivery_resumes(nodes, topic, [on_b])
        assert "lost" not in ids(on_b)  # at-most-once across the outage; resync said so


def _two_free_ports() -> int:
    """A port P with P and P + 1 free on loopback (bounded: 100 tries)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        with contextlib.suppress(OSError), socket.socket() as second:
            second.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no two consecutive free ports")


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


ROOT = Path(__file__).resolve().parents[2]


def _launch_example(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "examples.scaleout", "--port", str(port), "--seconds", "90"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _interrupt(launcher: subprocess.Popen[bytes]) -> None:
    """Ctrl-C by PID; SIGKILL only if it does not stop within 30 s."""
    launcher.send_signal(signal.SIGINT)
    try:
        launcher.wait(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=5)


async def test_the_scaleout_example_runs_two_workers_and_a_redis_with_one_command() -> None:
    require_tool("redis-server")
    port = _two_free_ports()
    launcher = _launch_example(port)
    try:
        await until(lambda: _listening(port) and _listening(port + 1), 45)
        async with httpx.AsyncClient(timeout=10) as http:
            tokens = [
                (await http.post(f"http://127.0.0.1:{p}/api/login", json={"name": n})).json()
                for p, n in ((port, "ann"), (port + 1, "bob"))
            ]
        protocols: list[Any] = [["bearer", t["token"]] for t in tokens]
        async with (
            connect(f"ws://127.0.0.1:{port}/ws", subprotocols=protocols[0]) as a,
            connect(f"ws://127.0.0.1:{port + 1}/ws", subprotocols=protocols[1]) as b,
        ):
            ca, cb = Client(a), Client(b)
            await until(lambda: bool(ca.data_of("welcome")) and bool(cb.data_of("welcome")))
            assert ca.data_of("welcome")[0]["node"] != cb.data_of("welcome")[0]["node"]
            await a.send(json.dumps({"type": "say", "data": {"text": "across"}}))
            await until(lambda: bool(cb.data_of("said")))
            assert cb.data_of("said")[0]["text"] == "across"
            assert ca.data_of("said") == []  # the sender is excluded, on every worker
    finally:
        _interrupt(launcher)
    assert not _listening(port)  # it stopped both workers (and its redis-server)
    assert not _listening(port + 1)
