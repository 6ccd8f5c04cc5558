"""Backplanes as bare nodes, for the contract tests that run one body on every backplane.

`nodes_on()` yields a factory that starts nodes on one medium: an ``InMemoryBus``
(``"memory"``) or a real redis-server started for the test and stopped by PID
(``"redis"``). Each node's listener records every packet, resync and presence expiry.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tempest_ws.backplane import Backplane, InMemoryBackplane, InMemoryBus
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import require_tool

MEDIUMS = ("memory", "redis")


@dataclass
class Recorder:
    """A BackplaneListener that records what arrives."""

    packets: list[tuple[str, bytes]] = field(default_factory=list)
    resyncs: int = 0
    expired: list[tuple[str, str]] = field(default_factory=list)

    def on_packet(self, channel: str, packet: bytes) -> None:
        self.packets.append((channel, packet))

    def on_resync(self) -> None:
        self.resyncs += 1

    def on_presence_expired(self, topic: str, user: str) -> None:
        self.expired.append((topic, user))

    def on(self, channel: str) -> list[bytes]:
        """The packets that arrived on ``channel``, in order."""
        return [p for c, p in self.packets if c == channel]


@dataclass
class Node:
    """One started backplane, its listener and its node id."""

    backplane: Backplane
    listener: Recorder
    node_id: str


NodeFactory = Callable[[], Awaitable[Node]]


def redis_backplane(url: str, **options: Any) -> Backplane:
    """A RedisBackplane with timeouts short enough for tests."""
    from tempest_ws.backplane import RedisBackplane

    defaults: dict[str, Any] = {
        "timeout": 1.0,
        "health_check_interval": 1.0,
        "reconnect_max": 0.2,
        "presence_ttl": 2.0,
    }
    return RedisBackplane(url, **{**defaults, **options})


@contextlib.asynccontextmanager
async def nodes_on(kind: str, **options: Any) -> AsyncIterator[NodeFactory]:
    """Start nodes on ``kind`` (see `MEDIUMS`); every node is stopped on exit.

    ``options`` go to `redis_backplane()` (ignored in memory).
    """
    started: list[Node] = []
    server: RedisServer | None = None
    if kind == "memory":
        bus = InMemoryBus()

        def make() -> Backplane:
            return InMemoryBackplane(bus)
    else:
        require_tool("redis-server")
        server = RedisServer()
        server.start()
        url = server.url

        def make() -> Backplane:
            return redis_backplane(url, **options)

    async def start() -> Node:
        node = Node(make(), Recorder(), f"{len(started) + 1:012x}")
        await node.backplane.start(node.node_id, node.listener)
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in started:
            await node.backplane.stop()
        if server is not None:
            server.close()
