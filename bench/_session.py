"""One server process and one load generator, and the plans that say how much to run.

A `Session` starts a benchmark server (``bench.server``) and a load generator
(``bench.loadgen``) as child processes and runs phases against them: arm the clients, ask
the server to publish, wait for the deliveries, and read both processes' CPU. `PLANS`
holds the sizes of the ``tiny``, ``quick`` and ``full`` modes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ._proc import Child, ChildTimeout, CpuMeter, rss_bytes
from ._wire import SEQ_BASE

KINDS = ("bare", "native", "picows", "tempest")
PACED_INTERVAL = 0.02
LOADGEN_BUSY = 0.9  # a load generator above this share of one core is the bottleneck


@dataclass
class Plan:
    """How much of everything one mode runs."""

    mode: str
    ns: list[int]
    burst_deliveries: int
    burst_max_rounds: int
    burst_repeats: int
    paced_rounds: int
    per_user_users: int
    per_user_rounds: int
    stall_rounds: int
    heartbeat_n: int
    heartbeat_interval: float
    heartbeat_idle: float
    idle_seconds: float = 1.0
    redis_ns: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    syscalls: bool = True  # count write syscalls per frame with strace (where installed)
    tight: bool = True  # also time bursts published all in one event-loop tick


PLANS = {
    "tiny": Plan("tiny", [20], 2_000, 100, 1, 20, 20, 5, 20, 20, 0.5, 1.6, idle_seconds=0.3),
    "quick": Plan(
        "quick", [100, 1000], 100_000, 400, 2, 100, 1000, 80, 100, 1000, 1.0, 4.0, redis_ns=[1000]
    ),
    "full": Plan(
        "full",
        [100, 1000, 5000],
        200_000,
        400,
        3,
        250,
        1000,
        200,
        150,
        5000,
        2.0,
        8.0,
        redis_ns=[1000, 5000],
    ),
}


class Session:
    """One server process plus one load generator, and the phases run against them."""

    def __init__(self, kind: str, *server_args: str, tree: str | None = None) -> None:
        self.kind = kind
        env = {"TEMPEST_BENCH_TREE": tree} if tree else None
        server_kind = "tempest" if kind.startswith("tempest") else kind
        self.server = Child("bench.server", server_kind, *server_args, env=env)
        self.loadgen = Child("bench.loadgen")
        self.port = int(self.server.hello["port"])
        self.seq = SEQ_BASE
        self.stuck = False
        self.extra_pids: list[int] = []  # more server-side processes whose CPU counts

    def close(self) -> None:
        self.loadgen.stop()
        self.server.stop(grace=2.0 if self.stuck else 10.0)

    def rss(self) -> int:
        if not self.stuck:
            self.server.request("gc", timeout=10)
        return rss_bytes(self.server.pid)

    def connect(self, n: int) -> dict[str, Any]:
        before = self.server.request("count")["connections"]
        result = self.loadgen.request(
            "connect", timeout=120, port=self.port, path="/ws", n=n, prefix="u", concurrency=64
        )
        self.wait_count(before + result["connected"])
        return result

    def wait_count(self, n: int, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        count = -1
        while time.monotonic() < deadline:
            count = int(self.server.request("count")["connections"])
            if count >= n:
                break
            time.sleep(0.05)
        return count

    def phase(
        self, op: str, rounds: int, *, latency: bool, budget: float = 60.0, **args: Any
    ) -> dict[str, Any]:
        """Arm the clients, run ``op`` on the server, wait for the deliveries; measure CPU.

        ``budget`` bounds the server's publishing loop in seconds; a server that has not
        answered by then (the bare loop behind a stalled client) is marked stuck.
        """
        seq0 = self.seq
        self.seq += rounds + 1
        self.loadgen.request("arm", seq0=seq0, rounds=rounds, latency=latency)
        meter = CpuMeter(self.loadgen.pid, self.server.pid, *self.extra_pids)
        try:
            sent = self.server.request(
                op, timeout=budget + 1, rounds=rounds, seq0=seq0, timeout_s=budget, **args
            )
        except ChildTimeout:
            sent = {"stuck": True}
            self.stuck = True
        got = self.loadgen.request("wait", timeout=60, seconds=2.0 if self.stuck else 30.0)
        wall, (cpu_loadgen, *cpu_servers) = meter.stop()
        cpu_server = sum(cpu_servers)
        out: dict[str, Any] = {"rounds": rounds, **got}
        out["stuck"] = bool(sent.get("stuck"))
        if "t0_ns" in sent and got["last_ns"]:
            seconds = (got["last_ns"] - sent["t0_ns"]) / 1e9
            out["seconds"] = seconds
            out["msgs_per_s"] = got["delivered"] / seconds if seconds > 0 else None
        delivered = max(1, got["delivered"])
        out["server_cpu_s"] = cpu_server
        out["server_cpu_us_per_msg"] = cpu_server / delivered * 1e6
        out["server_busy"] = cpu_server / wall
        out["loadgen_busy"] = cpu_loadgen / wall
        out["loadgen_bound"] = cpu_loadgen / wall >= LOADGEN_BUSY
        return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median throughput, with every run's throughput and CPU alongside."""
    ok = [r for r in runs if r.get("msgs_per_s")]
    if not ok:
        return runs[0] if runs else {}
    ok.sort(key=lambda r: r["msgs_per_s"])
    best = dict(ok[len(ok) // 2])
    best["all_msgs_per_s"] = [r["msgs_per_s"] for r in runs if r.get("msgs_per_s")]
    best["all_cpu_us_per_msg"] = [r["server_cpu_us_per_msg"] for r in runs]
    return best
