"""Several load generator processes driven as one (each stays under the file limit).

Client sockets are spread over the processes and over source addresses 127.0.0.2,
127.0.0.3, ... (each address has its own ephemeral port range, about 28,000 ports), so
tens of thousands of loopback connections neither hit a per-process file limit nor run
out of ports. Every child is stopped by its PID (see :class:`bench._proc.Child`).
"""

from __future__ import annotations

import time
from typing import Any

from ._proc import Child, CpuMeter

PER_SOURCE = 5_000  # client sockets per source address, well inside its port range


def sources_for(n: int) -> list[str]:
    """Enough loopback source addresses for ``n`` client sockets."""
    count = max(1, -(-n // PER_SOURCE))
    return [f"127.0.0.{2 + i}" for i in range(count)]


def merge_latencies(samples: list[int]) -> dict[str, Any]:
    """p50/p99/max in milliseconds of microsecond samples."""
    if not samples:
        return {}
    samples.sort()
    return {
        "p50": samples[len(samples) // 2] / 1e3,
        "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e3,
        "max": samples[-1] / 1e3,
        "samples": len(samples),
    }


class Fleet:
    """``loaders`` load generator processes."""

    def __init__(self, loaders: int) -> None:
        self.children: list[Child] = []
        try:
            for _ in range(loaders):
                self.children.append(Child("bench.loadgen"))
        except Exception:
            self.stop()
            raise
        self.pids = [c.pid for c in self.children]

    def all(self, op: str, timeout: float, **args: Any) -> list[dict[str, Any]]:
        """Send ``op`` to every loader at once, then read every answer."""
        for child in self.children:
            child.send(op, **args)
        return [child.read(timeout) for child in self.children]

    def each(self, op: str, timeout: float, args: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``op`` with its own arguments to each loader at once, then read."""
        for child, kw in zip(self.children, args, strict=True):
            child.send(op, **kw)
        return [child.read(timeout) for child in self.children]

    def connect(
        self,
        n: int,
        ports: list[int],
        *,
        concurrency: int = 64,
        timeout: float = 600.0,
        retry_503_s: float = 0.0,
        rate: float | None = None,
    ) -> dict[str, Any]:
        """``n`` clients with tokens ``u0`` ... ``u<n-1>``, split in contiguous blocks
        over the loaders, round robin over ``ports`` and the source addresses; with
        ``rate``, at most that many attempts start per second over all loaders."""
        sources = sources_for(n)
        k = len(self.children)
        blocks = [(n * i // k, n * (i + 1) // k) for i in range(k)]
        started = time.monotonic()
        answers = self.each(
            "connect",
            timeout,
            [
                {
                    "port": ports[0],
                    "ports": ports,
                    "path": "/ws",
                    "n": hi - lo,
                    "start": lo,
                    "prefix": "u",
                    "concurrency": concurrency,
                    "sources": sources,
                    "retry_503_s": retry_503_s,
                    "rate": rate / k if rate else None,
                }
                for lo, hi in blocks
            ],
        )
        return {
            "connected": sum(a.get("connected", 0) for a in answers),
            "failed": sum(a.get("failed", 0) for a in answers),
            "retried_503": sum(a.get("retried_503", 0) for a in answers),
            "seconds": time.monotonic() - started,
            "sources": len(sources),
            "per_loader": [a.get("connected", 0) for a in answers],
            "errors": [a["error"] for a in answers if "error" in a],
        }

    def phase(
        self,
        publisher: Child,
        op: str,
        seq0: int,
        rounds: int,
        *,
        interval: float,
        server_pids: list[int],
        wait_s: float = 60.0,
        **args: Any,
    ) -> dict[str, Any]:
        """Arm every loader, have ``publisher`` run ``op``, gather the deliveries and the
        latency of each, and the CPU the server side (``server_pids``) spent."""
        self.all("arm", 30, seq0=seq0, rounds=rounds, latency=True)
        meter = CpuMeter(*server_pids, *self.pids)
        budget = rounds * interval * 5 + 60
        sent = publisher.request(
            op,
            timeout=budget + 5,
            rounds=rounds,
            seq0=seq0,
            interval=interval,
            timeout_s=budget,
            **args,
        )
        got = self.all("wait", wait_s + 60, seconds=wait_s, raw=True)
        wall, cpus = meter.stop()
        server_cpu = sum(cpus[: len(server_pids)])
        loader_cpu = cpus[len(server_pids) :]
        samples: list[int] = []
        for answer in got:
            samples.extend(answer.pop("latencies_us", []))
        delivered = sum(a["delivered"] for a in got)
        clients = sum(a["clients"] for a in got)
        return {
            "rounds": rounds,
            "rounds_sent": sent.get("rounds"),
            "interval_s": interval,
            "clients": clients,
            "delivered": delivered,
            "expected": clients * rounds,
            "complete": sum(a["complete"] for a in got),
            "min_count": min((a["min_count"] for a in got), default=0),
            "order_errors": sum(a["order_errors"] for a in got),
            "lost": sum(a["lost"] for a in got),
            "latency_ms": merge_latencies(samples),
            "server_cpu_s": server_cpu,
            "server_cpu_us_per_delivery": server_cpu / max(1, delivered) * 1e6,
            "loader_busy_max": max(loader_cpu) / wall if loader_cpu else 0.0,
            "error": sent.get("error"),
        }

    def pings(self, interval: float) -> dict[str, Any]:
        """The heartbeat pings every client saw since ``arm(pings=True)``, merged."""
        got = self.all("pings", 60, interval=interval)
        return {
            "pings": sum(a["pings"] for a in got),
            "min_pings_per_client": min(a["min_pings_per_client"] for a in got),
            "late": sum(a["late"] for a in got),
            "overdue": sum(a.get("overdue", 0) for a in got),
            "gap_p50_s_worst_loader": max(a["gap_p50_s"] or 0 for a in got),
            "gap_p99_s_worst_loader": max(a["gap_p99_s"] or 0 for a in got),
            "gap_max_s": max(a["gap_max_s"] or 0 for a in got),
            "lost": sum(a["lost"] for a in got),
            "close_codes": sorted({c for a in got for c in a["close_codes"]}),
        }

    def stop(self) -> None:
        for child in self.children:
            child.stop()
