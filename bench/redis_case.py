"""tempest_ws across two uvicorn worker processes through a real ``redis-server``.

Worker A publishes; half the clients are connected to A (local fan-out), half to worker
B (the frame crosses Redis pub/sub first). Every client must see every round in order.
CPU counts both workers and Redis. The reference figure is the in-process hub at the
same N in the same run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Any

from ._proc import Child, ChildTimeout
from .run import PACED_INTERVAL, Plan, Session, _median_run


class RedisProcess:
    """A throwaway ``redis-server`` on a free loopback port, stopped by its PID."""

    def __init__(self, binary: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is None:
                os.kill(self.pid, sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


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
        out["burst"] = _median_run(bursts)
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
