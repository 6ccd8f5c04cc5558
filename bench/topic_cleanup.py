"""Event-loop stall while a connection holding many topics closes (in memory or on Redis).

``python -m bench.topic_cleanup --topics 256 --topics 100000 [--redis]``: for each
count, one connection subscribes that many topics through ``hub.subscribe`` (the cap
raised to allow it), then a probe task measures the longest gap between its wake-ups
(it asks for one every millisecond) while the connection closes and the hub cleans up
(registry, presence, history and backplane channels), and, for comparison, over the
same time with nothing to do (``idle_max_loop_gap_ms``: what the machine itself adds).
With ``--redis`` the hub uses a ``RedisBackplane`` on a ``redis-server`` started here
(stopped by PID afterwards), so the cleanup also unsubscribes that many Redis channels.
Prints one JSON line per count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from tempest_ws import WebSocketHub, allow_any_topic
from tempest_ws.backplane import Backplane


class _Sink:
    async def send(self, message: Any) -> None:
        return None


async def _probe(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


def _topic_channels(hub: WebSocketHub) -> int:
    return sum(1 for channel in hub._node.channels if channel.startswith("topic:"))


async def measure(count: int, backplane: Backplane | None) -> dict[str, Any]:
    """Subscribe ``count`` topics on one connection, close it, return the longest gap."""
    hub = WebSocketHub(
        backplane=backplane,
        topic_authorizer=allow_any_topic,
        max_topics_per_connection=max(count, 1),
    )
    await hub.start()
    try:
        connection = hub.create_connection("bench", send=_Sink().send)
        await hub.register(connection)
        connection.start()
        started = time.perf_counter()
        async with asyncio.timeout(120):
            for n in range(count):
                await hub.subscribe(connection.connection_id, f"t:{n}")
        subscribed = time.perf_counter() - started
        stop, gaps = asyncio.Event(), []
        probe = asyncio.create_task(_probe(stop, gaps))
        await asyncio.sleep(0.3)  # the probe's baseline: the same time, nothing to do
        idle = max(gaps)
        gaps.clear()
        closing = time.perf_counter()
        await connection.close(1000, "bench")
        async with asyncio.timeout(60):  # bounded: a cleanup that never ends is a failure
            await hub._membership.finish_cleanups()  # no O(topics) polling while the probe measures
        await asyncio.sleep(0.3)  # whatever the cleanup scheduled runs now
        cleanup = time.perf_counter() - closing - 0.3
        stop.set()
        await probe
        if hub.stats().subscriptions or _topic_channels(hub):
            raise RuntimeError("the connection's topics were not all left")
    finally:
        stopped = True
        try:
            async with asyncio.timeout(10):
                await hub.stop()
        except TimeoutError:
            stopped = False
    return {
        "topics": count,
        "backplane": "redis" if backplane is not None else "memory",
        "subscribe_seconds": round(subscribed, 3),
        "cleanup_seconds": round(cleanup, 3),
        "max_loop_gap_ms": round(max(gaps) * 1000, 2),
        "idle_max_loop_gap_ms": round(idle * 1000, 2),
        "hub_stopped_within_10s": stopped,
    }


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    from tests.helpers.redis_server import RedisServer

    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()


async def _run(counts: list[int], redis_url: str | None) -> None:
    for count in counts:
        backplane: Backplane | None = None
        if redis_url is not None:
            from tempest_ws.backplane.redis import RedisBackplane

            backplane = RedisBackplane(redis_url)
        print(json.dumps(await measure(count, backplane)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topics", type=int, action="append", required=True)
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args()
    if args.redis:
        with _redis() as url:
            asyncio.run(_run(args.topics, url))
    else:
        asyncio.run(_run(args.topics, None))


if __name__ == "__main__":
    main()
