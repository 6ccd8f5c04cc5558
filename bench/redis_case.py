"""tempest_ws across two uvicorn worker processes through a real ``redis-server``.

Worker A publishes; half the clients are connected to A (local fan-out), half to worker
B (the frame crosses Redis pub/sub first). Every client must see every round in order.
CPU counts both workers and Redis. The reference figure is the in-process hub at the
same N in the same run.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from ._proc import Child, ChildTimeout, RedisProcess
from ._session import PACED_INTERVAL, Plan, Session, median_run


def two_workers(n: int, plan: Plan, log: Any, tree: str | None = None) -> dict[str, Any]:
    """Burst and paced figures for N clients split over two workers sharing Redis."""
    binary = shutil.which("redis-server")
    if binary is None:
        return {"status": "not run: redis-server is not installed"}
    out: dict[str, Any] = {"n": n, "workers": 2}
    redis = RedisProcess(binary)
    other: Child | None = None
    session: Session | None = None
    try:
        env = {"TEMPEST_BENCH_TREE": tree} if tree else None
        session = Session("tempest", "--redis-url", redis.url, tree=tree)
        other = Child("bench.server", "tempest", "--redis-url", redis.url, env=env)
        session.extra_pids = [other.pid, redis.pid]
        half = n // 2
        first = session.connect(half)
        second = session.loadgen.request(
            "connect",
            timeout=120,
            port=int(other.hello["port"]),
            path="/ws",
            n=n - half,
            prefix="w",
            concurrency=64,
        )
        out["connected"] = first["connected"] + second["connected"]
        deadline = time.monotonic() + 15
        while other.request("count")["connections"] < second["connected"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        rounds = max(10, min(plan.burst_max_rounds, plan.burst_deliveries // n))
        session.phase("burst", min(rounds, 20), latency=False)  # warm-up, not kept
        bursts = [session.phase("burst", rounds, latency=False) for _ in range(plan.burst_repeats)]
        out["burst"] = median_run(bursts)
        out["paced"] = session.phase(
            "paced",
            plan.paced_rounds,
            latency=True,
            interval=PACED_INTERVAL,
            budget=plan.paced_rounds * PACED_INTERVAL * 10 + 10,
        )
        lat = out["paced"].get("latency_ms", {})
        log(
            f"  redis x2    N={n:<6} burst {out['burst'].get('msgs_per_s') or 0:>10,.0f} msg/s, "
            f"paced p99 {lat.get('p99', 0):.1f} ms, every round: {out['paced']['min_count']}"
        )
        out["status"] = "ok"
    except (ChildTimeout, OSError, KeyError, RuntimeError) as exc:
        out["status"] = f"failed: {exc!r}"
        log(f"  redis x2 N={n} failed: {exc!r}")
    finally:
        if session is not None:
            session.close()
        if other is not None:
            other.stop()
        redis.stop()
    return out
