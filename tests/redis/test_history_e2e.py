"""Recovery end to end: two uvicorn processes of ``examples/history.py`` on one real
redis-server, raw ``websockets`` clients that store the position of each message.

A client is cut off while another node keeps publishing, then comes back on a node with
its stored position: (a) its node is SIGKILLed, (b) the network between it and its node
is cut (an in-test TCP proxy drops everything, then resets), (c) it missed more than
the history keeps, (d) Redis lost everything (``FLUSHALL``). In (a) and (b) it gets
every missed message once, in order, then ``recovery{recovered: true}``, then live
ones; in (c) and (d) ``recovered: false``.

The nodes and Redis start once for the module; each test uses its own room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers.history_support import Nodes, history_nodes, post
from tests.helpers.scaleout_app import AppProcess, start_all
from tests.helpers.support import token
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MAX_MESSAGES = 10
BOUND = 15.0  # upper bound of any wait; reached only when something is broken


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    with history_nodes(tmp_path_factory.mktemp("history-e2e"), max_messages=MAX_MESSAGES) as n:
        yield n


class Client:
    """A raw client that records every envelope and keeps the last position per topic,
    as a resuming client does."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.positions: dict[str, tuple[int, str]] = {}
        self.closed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, user: str = "ann") -> Client:
        ws = await connect(url, subprotocols=["bearer", token(user)])  # type: ignore[list-item]
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "ping":
                    await self.ws.send(json.dumps({"type": "pong", "data": {}}))
                    continue
                self.frames.append(frame)
                if "offset" in frame and frame.get("type") != "recovery":
                    self.positions[frame["topic"]] = (frame["offset"], frame["epoch"])
                elif frame.get("type") == "recovery":
                    data = frame["data"]
                    self.positions[data["topic"]] = (data["offset"], data["epoch"])
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def subscribe(self, topic: str, *, resume: bool = False) -> None:
        data: dict[str, Any] = {"topic": topic}
        if resume:
            offset, epoch = self.positions[topic]
            data.update(offset=offset, epoch=epoch)
        await self.ws.send(json.dumps({"type": "subscribe", "data": data, "request_id": "s"}))
        await self.wait_for(lambda f: f.get("type") == "recovery")

    async def wait_for(self, predicate: Any, count: int = 1) -> None:
        async with asyncio.timeout(BOUND):
            while sum(1 for f in self.frames if predicate(f)) < count:
                await asyncio.sleep(0.01)

    def messages(self) -> list[int]:
        return [int(f["data"]["text"]) for f in self.frames if f.get("type") == "chat.message"]

    def story(self) -> list[str]:
        """``ack``, ``recovery:<recovered>`` or the message's number, in order."""
        out = []
        for f in self.frames:
            if f["type"] == "recovery":
                out.append(f"recovery:{f['data']['recovered']}")
            elif f["type"] == "chat.message":
                out.append(str(f["data"]["text"]))
            elif f["type"] != "hello":
                out.append(f["type"])
        return out

    def forget(self) -> None:
        """Drop what was received (keep the positions), as after a reconnect."""
        self.frames.clear()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def use(self, ws: ClientConnection) -> None:
        self._reader.cancel()
        self.ws = ws
        self.closed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())


async def publish(app: AppProcess, room: str, *numbers: int) -> None:
    await post(app, room, *numbers, timeout=BOUND)


async def reconnect(client: Client, url: str) -> None:
    await client.close()
    client.forget()
    ws = await connect(url, subprotocols=["bearer", token("ann")])  # type: ignore[list-item]
    client.use(ws)


def room() -> tuple[str, str]:
    name = uuid.uuid4().hex[:8]
    return name, f"room:{name}"


async def follow(url: str, topic: str, room_name: str, publisher: AppProcess) -> Client:
    """A client subscribed to ``topic`` that got messages 1 and 2."""
    client = await Client.open(url)
    await client.subscribe(topic)
    await publish(publisher, room_name, 1, 2)
    await client.wait_for(lambda f: f.get("type") == "chat.message", 2)
    assert client.story() == ["ack", "recovery:False", "1", "2"]
    return client


async def test_a_killed_node_the_client_resumes_on_another(nodes: Nodes) -> None:
    a, b = nodes.apps
    name, topic = room()
    client = await follow(a.ws, topic, name, b)
    try:
        assert a.process is not None
        a.process.kill()  # SIGKILL: no close frame, no goodbye
        a.process.wait(timeout=10)
        async with asyncio.timeout(BOUND):
            await client.closed.wait()
        await publish(b, name, 3, 4, 5, 6, 7)  # missed
        await reconnect(client, b.ws)
        await client.subscribe(topic, resume=True)
        await publish(b, name, 8)
        await client.wait_for(lambda f: f.get("type") == "chat.message", 6)
        assert client.story() == ["ack", "3", "4", "5", "6", "7", "recovery:True", "8"]
        recovery = next(f for f in client.frames if f["type"] == "recovery")
        assert recovery["data"]["replayed"] == 5
        assert recovery["request_id"] == "s"
    finally:
        await client.close()
        a.process = None
        start_all([a])  # back for the other tests


async def test_a_network_cut_the_client_resumes(nodes: Nodes) -> None:
    _, b = nodes.apps
    name, topic = room()
    async with TcpProxy(b.port) as proxy:
        client = await follow(proxy.ws, topic, name, b)
        try:
            proxy.freeze()
            await publish(b, name, 3, 4, 5)  # written by the node, lost on the way
            proxy.cut()
            async with asyncio.timeout(BOUND):
                await client.closed.wait()
            assert client.messages() == [1, 2]
            await reconnect(client, proxy.ws)
            await client.subscribe(topic, resume=True)
            await publish(b, name, 6)
            await client.wait_for(lambda f: f.get("type") == "chat.message", 4)
            assert client.story() == ["ack", "3", "4", "5", "recovery:True", "6"]
        finally:
            await client.close()


async def test_more_missed_than_the_history_keeps_is_recovered_false(nodes: Nodes) -> None:
    a, b = nodes.apps
    name, topic = room()
    client = await follow(a.ws, topic, name, b)
    try:
        await client.close()
        await publish(b, name, *range(3, 3 + 3 * MAX_MESSAGES))
        await reconnect(client, b.ws)
        await client.subscribe(topic, resume=True)
        assert client.story() == ["ack", "recovery:False"]
        recovery = client.frames[-1]["data"]
        assert recovery["offset"] == 2 + 3 * MAX_MESSAGES
        assert recovery["replayed"] == 0
    finally:
        await client.close()


async def test_redis_data_loss_is_recovered_false(nodes: Nodes) -> None:
    a, b = nodes.apps
    name, topic = room()
    client = await follow(a.ws, topic, name, b)
    try:
        await client.close()
        _, old_epoch = client.positions[topic]
        with nodes.redis.client() as redis:
            redis.flushall()
        await publish(b, name, 3, 4)  # offsets 1 and 2 of a new epoch
        await reconnect(client, a.ws)
        await client.subscribe(topic, resume=True)
        recovery = client.frames[-1]["data"]
        assert client.story() == ["ack", "recovery:False"]
        assert (recovery["offset"], recovery["replayed"]) == (2, 0)
        assert recovery["epoch"] > old_epoch
    finally:
        await client.close()


async def test_the_history_endpoint_pages_and_authorizes(nodes: Nodes) -> None:
    a, b = nodes.apps
    name, _ = room()
    await publish(b, name, *range(1, 8))
    headers = {"Authorization": f"Bearer {token('reader')}"}
    async with httpx.AsyncClient(base_url=a.base, timeout=BOUND) as http:
        newest = (await http.get(f"/rooms/{name}/history?limit=3", headers=headers)).json()
        assert [m["offset"] for m in newest["messages"]] == [5, 6, 7]
        assert newest["messages"][0]["data"] == {"from": "pub", "text": "5"}
        assert newest["latest"] == 7
        page = await http.get(f"/rooms/{name}/history?since=2&limit=2", headers=headers)
        assert [m["offset"] for m in page.json()["messages"]] == [3, 4]
        assert page.json()["epoch"] == newest["epoch"]
        assert (await http.get(f"/rooms/{name}/history")).status_code in (401, 403)
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await http.get(f"/rooms/{name}/history", headers=bad)).status_code == 401
