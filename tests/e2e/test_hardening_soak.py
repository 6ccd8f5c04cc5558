"""Soak: 5,000 connect/subscribe/disconnect cycles leave nothing behind.

One in five clients vanishes without a close frame (its TCP connection is aborted). At
the end the registry, topics, users, the per-address table, the router's live set and
the event loop's tasks are back to where they started, and the process's resident
memory grew by less than a bound measured after a warm-up (so imports, caches and
allocator arenas filled by the first cycles do not count).

It runs in the default suite: about 10-30 s on a 2-core machine. Its own timeout is
raised because a machine shared with other test runs may be several times slower.
"""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tempest_ws.testing import serve
from tests.helpers.hardening import build_router_app, next_of_type, tempest_tasks
from tests.helpers.support import make_settings, token, until, ws_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CYCLES = 5000
WARMUP = 500
WORKERS = 8
USERS = 200
TOPICS = 50
ABORT_EVERY = 5
RSS_GROWTH_LIMIT = 16 * 1024 * 1024


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_soak_cycles_return_everything_to_zero() -> None:
    settings = make_settings(WS_MAX_CONNECTIONS_PER_IP=64)
    app, hub, router = build_router_app(settings)
    tokens = [token(f"user-{n}") for n in range(USERS)]
    async with serve(app, settings=settings) as base:
        url = ws_url(base)
        baseline_tasks = len(asyncio.all_tasks())
        completed = 0

        async def cycle(i: int) -> None:
            nonlocal completed
            ws = await connect(
                url,
                subprotocols=["bearer", tokens[i % USERS]],
                compression=None,  # type: ignore[list-item]
            )
            await next_of_type(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "data": {"topic": f"t{i % TOPICS}"}}))
            await next_of_type(ws, "subscribed")
            if i % ABORT_EVERY == 0:
                ws.transport.abort()  # gone without a close frame
            else:
                await ws.close()
            completed += 1

        async def run(first: int, last: int) -> None:
            async def worker(offset: int) -> None:
                for i in range(first + offset, last, WORKERS):
                    await cycle(i)

            await asyncio.gather(*(worker(w) for w in range(WORKERS)))

        async def settled() -> None:
            await until(lambda: hub.stats().connections == 0, timeout=30)
            await until(lambda: tempest_tasks() == [], timeout=30)
            await until(lambda: len(asyncio.all_tasks()) == baseline_tasks, timeout=30)

        await run(0, WARMUP)
        await settled()
        gc.collect()
        warm_rss = rss_bytes()

        await run(WARMUP, CYCLES)
        await settled()
        gc.collect()
        grown = rss_bytes() - warm_rss

        assert completed == CYCLES
        stats = hub.stats()
        assert (stats.connections, stats.users, stats.topics, stats.subscriptions) == (0, 0, 0, 0)
        assert await hub.online_users() == set()
        assert router.connection_count() == 0
        assert router._tempest_endpoint.addresses.counts == {}
        assert grown < RSS_GROWTH_LIMIT, f"RSS grew by {grown / 2**20:.1f} MiB after warm-up"
