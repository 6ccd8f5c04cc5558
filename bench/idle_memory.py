"""Where an idle connection's bytes go: ``python -m bench.idle_memory KIND N [--depth D]``.

A development aid. Runs one benchmark server (``bench.server``'s ``bare`` or ``tempest``)
in this process under uvicorn, opens N idle clients from one load generator
(``bench.loadgen``), takes a ``tracemalloc`` snapshot, opens N more, takes another, and
prints the allocation sites that grew, per connection (so one-time costs drop out), with
the RSS growth per connection over the same step (inflated by tracemalloc's own
bookkeeping: compare RSS with ``python -m bench``, not here). ``--save FILE`` writes the
per-site figures as JSON; ``--against FILE`` prints the difference to a saved run (for
example ``tempest`` against ``bare``). Bounded: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import tracemalloc
from pathlib import Path
from typing import Any

from ._proc import ROOT, Child, rss_bytes
from .server import Bare, Target, Tempest


def _site(frame: tracemalloc.Frame) -> str:
    name = frame.filename.split("site-packages/")[-1].replace(f"{ROOT}/", "")
    return f"{name}:{frame.lineno}"


async def _connect(target: Target, loadgen: Child, port: int, n: int, start: int) -> None:
    await asyncio.to_thread(
        loadgen.request,
        "connect",
        120,
        port=port,
        path="/ws",
        n=n,
        prefix="u",
        concurrency=64,
        start=start,
    )
    for _ in range(300):
        if target.count() >= start + n:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    gc.collect()


async def measure(kind: str, n: int, depth: int) -> dict[str, Any]:
    target: Target = Bare() if kind == "bare" else Tempest(None, None)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    await target.start(sock)
    port = sock.getsockname()[1]
    loadgen = await asyncio.to_thread(Child, "bench.loadgen")
    try:
        tracemalloc.start(depth)
        await _connect(target, loadgen, port, n, 0)
        rss0, first = rss_bytes(os.getpid()), tracemalloc.take_snapshot()
        await _connect(target, loadgen, port, n, n)
        rss1, second = rss_bytes(os.getpid()), tracemalloc.take_snapshot()
        tracemalloc.stop()
        sites: dict[str, float] = {}
        for stat in second.compare_to(first, "lineno"):
            if stat.size_diff:
                key = _site(stat.traceback[0])
                sites[key] = sites.get(key, 0.0) + stat.size_diff / n
        return {
            "kind": kind,
            "n": n,
            "connections": target.count(),
            "rss_per_conn_kb": (rss1 - rss0) / n / 1024,
            "traced_per_conn_b": sum(sites.values()),
            "sites": sites,
        }
    finally:
        await asyncio.to_thread(loadgen.stop)
        await target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_memory")
    parser.add_argument("kind", choices=["bare", "tempest"])
    parser.add_argument("n", type=int)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--against", type=Path)
    args = parser.parse_args()
    try:
        import uvloop  # as bench.server runs
    except ImportError:
        result = asyncio.run(measure(args.kind, args.n, args.depth))
    else:
        result = uvloop.run(measure(args.kind, args.n, args.depth))
    if args.save:
        args.save.write_text(json.dumps(result, indent=1))
    sites: dict[str, float] = result["sites"]
    title = f"{args.kind}, N {args.n} -> {2 * args.n}"
    if args.against:
        other = json.loads(args.against.read_text())
        for key, size in other["sites"].items():
            sites[key] = sites.get(key, 0.0) - size
        title += f", minus {other['kind']}"
    print(
        f"{title}: {result['connections']} open, RSS {result['rss_per_conn_kb']:.2f} KB/conn "
        f"(under tracemalloc), traced {sum(sites.values()):.0f} B/conn"
    )
    for key, size in sorted(sites.items(), key=lambda kv: -abs(kv[1]))[: args.top]:
        print(f"{size:8.0f} B  {key}")


if __name__ == "__main__":
    main()
