"""Helpers for the history tests: connections on a hub, what they got, stores and
buses that fail, stall or lose packets on purpose, and uvicorn nodes on a real Redis.

Connections write to a `Peer`. Hubs sharing one
`LossyBus` behave like processes on one Redis; the bus can drop chosen packets
(a lost pub/sub message) or deliver them out of order. `history_nodes()` runs
``examples/history.py`` in two uvicorn processes on one ``redis-server`` for the
end-to-end tests; `post()` publishes to a room through a node's HTTP endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tempest_ws.backplane import InMemoryBus
from tempest_ws.backplane.memory import _deliver
from tempest_ws.backplane.packet import decode_packet
from tempest_ws.exceptions import BackplaneError
from tempest_ws.history import HistoryPage, HistoryStore, Position, Recovery
from tests.helpers.redis_server import RedisServer
from tests.helpers.scaleout_app import AppProcess, start_all
from tests.helpers.support import SECRET, Peer, frames, require_tool, token

STAMP_EDGE_FRAMES = (
    '{"type":"m","data":{"text":"plain"},"request_id":null}',
    '{"type":"m","data":{"text":"é ünïcode ✓ 🎉 \\"quoted\\""},"request_id":null}',
    "{}",
    '{\n  "type": "pretty",\n  "data": 1\n}',
    '{"type":"m","data":1 \t}',
    "{ }",
)
"""Frames a store stamps on its server: compact, non-ASCII and escaped, empty, pretty,
with whitespace before the closing brace."""

TOPIC = "chat:1"
HISTORY_APP = "examples.history:create_app"


@dataclass
class Nodes:
    """A ``redis-server`` and the uvicorn processes of `history_nodes()`."""

    redis: RedisServer
    apps: list[AppProcess]


@contextlib.contextmanager
def history_nodes(
    workdir: Path,
    *,
    max_messages: int | None = None,
    count: int = 2,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Nodes]:
    """``count`` uvicorn nodes of ``examples/history.py`` on one new ``redis-server``,
    ``room:*`` keeping ``max_messages`` (close to exactly: small stream nodes; the
    default bound without it), with ``extra_env`` added to their environment, stopped
    by PID on exit. Skips when ``redis-server`` is not installed."""
    require_tool("redis-server")
    redis = RedisServer()
    redis.start()
    with redis.client() as client:  # small stream nodes: MAXLEN ~ trims close to exact
        client.config_set("stream-node-max-entries", 4)
    env = {
        "WS_JWT_SECRET": SECRET,
        "WS_REDIS_URL": redis.url,
        "WS_REDIS_CHANNEL_PREFIX": f"h{uuid.uuid4().hex[:8]}",
        "WS_REDIS_TIMEOUT_SECONDS": "1",
        "WS_REDIS_HEALTH_CHECK_SECONDS": "1",
        "WS_REDIS_RECONNECT_MAX_SECONDS": "0.5",
        "WS_HISTORY_TOPICS": "room:*",
        "WS_HISTORY_GAP_TIMEOUT_SECONDS": "0.2",
        **(extra_env or {}),
    }
    if max_messages is not None:
        env["WS_HISTORY_MAX_MESSAGES"] = str(max_messages)
    apps = [AppProcess(env, app=HISTORY_APP, workdir=workdir) for _ in range(count)]
    try:
        start_all(apps)
        yield Nodes(redis, apps)
    finally:
        for app in apps:
            app.stop()
        redis.close()


async def post(app: AppProcess, room: str, *numbers: int, timeout: float = 15.0) -> None:
    """Publish ``chat.message`` ``{"text": str(n)}`` to ``room:<room>`` for each number,
    one after the other, through ``app``'s ``POST /rooms/{room}/messages``."""
    async with httpx.AsyncClient(base_url=app.base, timeout=timeout) as http:
        for n in numbers:
            response = await http.post(
                f"/rooms/{room}/messages",
                json={"text": str(n)},
                headers={"Authorization": f"Bearer {token('pub')}"},
            )
            assert response.status_code == 200, response.text


def offsets(peer: Peer, topic: str = TOPIC) -> list[int]:
    """Offsets of the stamped messages of ``topic`` the peer got, in order."""
    return [f["offset"] for f in frames(peer) if f.get("topic") == topic and "offset" in f]


def recoveries(peer: Peer, topic: str = TOPIC) -> list[dict[str, Any]]:
    """``recovery`` envelopes of ``topic`` (data plus request_id), in order."""
    return [
        {**f["data"], "request_id": f["request_id"]}
        for f in frames(peer)
        if f["type"] == "recovery" and f["data"]["topic"] == topic
    ]


def kinds(peer: Peer) -> list[str]:
    """What the peer got, one word per frame: ``ack``, ``recovery``, or the offset."""
    out = []
    for f in frames(peer):
        if "offset" in f and f["type"] != "recovery":
            out.append(str(f["offset"]))
        else:
            out.append(f["type"])
    return out


async def expect(peer: Peer, expected: list[str], *, timeout: float = 5.0) -> None:
    """Wait until the peer got ``len(expected)`` frames (bounded), then compare their
    `kinds()` with ``expected`` (a later frame proves an earlier one never came)."""
    async with asyncio.timeout(timeout):
        while len(peer.texts()) < len(expected):
            await asyncio.sleep(0.002)
    assert kinds(peer) == expected


class LossyBus(InMemoryBus):
    """An in-memory bus that drops the packets ``drop`` accepts and delays each packet by
    ``delay()`` seconds (0: the next loop iteration, as the plain bus does)."""

    def __init__(self) -> None:
        super().__init__()
        self.drop: Callable[[bytes], bool] = lambda packet: False
        self.delay: Callable[[], float] = lambda: 0.0
        self.dropped = 0

    def publish(self, sender: str, channel: str, packet: bytes) -> int:
        listeners = self.subscribers.get(channel)
        if not listeners:
            return 0
        if self.drop(packet):
            self.dropped += 1
            return len(listeners)
        loop = asyncio.get_running_loop()
        for node, listener in listeners.items():
            if node != sender:
                delay = self.delay()
                if delay > 0:
                    loop.call_later(delay, _deliver, listener, channel, packet)
                else:
                    loop.call_soon(_deliver, listener, channel, packet)
        return len(listeners)


def packet_offset(packet: bytes) -> int | None:
    """The history offset a packet carries, if any."""
    position = decode_packet(packet).position
    return None if position is None else position[0]


def jitter(rng: random.Random, late: float = 0.003) -> Callable[[], float]:
    """Delays for `LossyBus`: most packets next iteration, some up to ``late``."""
    return lambda: rng.choice((0.0, 0.0, 0.0, rng.uniform(0, late)))


def slow_reads(rng: random.Random, late: float = 0.004) -> Callable[[], Awaitable[None]]:
    """A pause for `ControlledStore.pause`: a few loop iterations, sometimes up
    to ``late`` seconds, as a read's round trip to Redis would take."""

    async def pause() -> None:
        for _ in range(rng.randrange(4)):
            await asyncio.sleep(0)
        if rng.random() < 0.5:
            await asyncio.sleep(rng.uniform(0, late))

    return pause


class ControlledStore:
    """Wraps a store: ``fail`` makes every call raise `BackplaneError`,
    ``gate`` (when set) holds ``since``/``latest`` until it is opened, ``pause`` runs
    before and after each read (a round trip), and ``closed`` counts ``aclose`` calls."""

    def __init__(self, inner: HistoryStore) -> None:
        self.inner = inner
        self.policy = getattr(inner, "policy", None)
        self.fail = False
        self.fail_reads = False
        self.gate: asyncio.Event | None = None
        self.pause: Callable[[], Awaitable[None]] | None = None
        self.reading = asyncio.Event()
        self.closed = 0

    def _check(self) -> None:
        if self.fail:
            raise BackplaneError("history store down (test)")

    async def _read_gate(self) -> None:
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.pause is not None:
            await self.pause()
        self._check()
        if self.fail_reads:
            raise BackplaneError("history reads down (test)")

    async def append(self, topic: str, frame: str) -> Position:
        self._check()
        return await self.inner.append(topic, frame)

    async def since(self, topic: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        await self._read_gate()
        recovery = await self.inner.since(topic, offset, epoch, limit=limit)
        if self.pause is not None:  # the answer travels back
            await self.pause()
        return recovery

    async def latest(self, topic: str) -> Position:
        await self._read_gate()
        position = await self.inner.latest(topic)
        if self.pause is not None:
            await self.pause()
        return position

    async def history(self, topic: str, *, since: int | None = None, limit: int) -> HistoryPage:
        self._check()
        return await self.inner.history(topic, since=since, limit=limit)

    async def aclose(self) -> None:
        self.closed += 1
        await self.inner.aclose()
