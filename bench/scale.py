"""Connection counts: one worker at its file limit, and 50,000 connections on one machine.

``python -m bench.scale --part a`` (or ``b``, or ``all``) prints a table and writes
``bench/results/scale.json``. Everything runs on loopback in child processes started and
stopped here by PID; client sockets are spread over several load generator processes and
source addresses (see :mod:`bench._fleet`). Every wait has a deadline, and ``--limit``
bounds the whole run.

Part A, one worker at its limit: N idle connections (default 19,000: the per-process
file limit here is 20,000) on one tempest_ws worker with the heartbeat settings' defaults
(``--heartbeat`` overrides them), connected at a paced rate (``--connect-rate``); every
ping each client gets from its handshake on is checked for lateness over a watch of
several heartbeats; server CPU per handshake, RSS per connection, and a paced broadcast to
all with its latency. The bare FastAPI loop runs the same N right before it, in the same
run, at the same pace, for the comparison.

Part B, one machine: three tempest_ws workers (separate processes, each on its own port)
sharing one redis-server, N connections in all (default 50,000), every client in one of
K topics; a paced broadcast to everyone and one to the K topics (published by one worker,
reaching the others through Redis) with p50/p99 and server CPU per delivery; then a
reconnect storm: every worker closes all its connections with 1012 (service restart) and
every client comes back with the Python client's reconnect policy (jittered backoff, see
:mod:`bench._storm`). The time until the workers hold all N again, and whether any
attempt was refused at a cap, are reported. Caps: ``WS_MAX_CONNECTIONS`` per worker is set
under the file limit, ``WS_MAX_CONNECTIONS_PER_IP`` stays 0 (all clients come from a few
loopback addresses) and every client is its own user.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._fleet import Fleet
from ._proc import ROOT, Child, CpuMeter, RedisProcess, machine_note, rss_bytes
from ._scale_docs import section, splice, table
from ._wire import SEQ_BASE
from .run import bench_settings

RESULTS = ROOT / "bench" / "results" / "scale.json"
POLL_S = 300.0  # how long the storm waits for one worker's answer (its loop is busy)
FD_HEADROOM = 500  # listening socket, pipes, Redis, logs: kept free under the file limit


class Clock:
    """The run's wall-clock budget."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"wall-clock limit reached before {what}")


def worker_cap() -> int:
    """``WS_MAX_CONNECTIONS`` for one worker: the file limit minus headroom."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return max(100, min(100_000, hard - FD_HEADROOM))


def wait_total(servers: list[Child], n: int, seconds: float) -> tuple[int, float]:
    """Poll the servers' connection counts until they sum to ``n``; (sum, seconds)."""
    started = time.monotonic()
    total = -1
    while time.monotonic() - started < seconds:
        total = sum(int(s.request("count", timeout=30)["connections"]) for s in servers)
        if total >= n:
            break
        time.sleep(0.2)
    return total, time.monotonic() - started


def gc_rss(server: Child, pauses: list[float] | None = None) -> int:
    """RSS after a full garbage collection; the collection's wall time (the pause it
    costs the server's event loop) is appended to ``pauses``."""
    started = time.monotonic()
    server.request("gc", timeout=30)
    if pauses is not None:
        pauses.append(time.monotonic() - started)
    return rss_bytes(server.pid)


def interval_for(n: int) -> float:
    """A pace that leaves a broadcast to ``n`` room to finish before the next."""
    return max(0.05, n / 40_000)


def part_a(
    n: int, loaders: int, args: argparse.Namespace, clock: Clock, log: Any
) -> dict[str, Any]:
    settings = bench_settings(heartbeat=args.heartbeat)
    beat = settings.WS_HEARTBEAT_SECONDS
    out: dict[str, Any] = {
        "n": n,
        "loaders": loaders,
        "max_connections": worker_cap(),
        "connect_rate": args.connect_rate,
        "heartbeat_settings": {
            "WS_HEARTBEAT_SECONDS": beat,
            "WS_HEARTBEAT_TIMEOUT_SECONDS": settings.WS_HEARTBEAT_TIMEOUT_SECONDS,
            "source": "defaults" if args.heartbeat is None else "--heartbeat",
        },
    }
    interval = interval_for(n)
    for kind in ("bare", "tempest"):
        clock.check(f"part A {kind}")
        extra = [] if kind == "bare" or args.heartbeat is None else ["--heartbeat", str(beat)]
        server = Child("bench.server", kind, *extra, "--max-connections", str(worker_cap()))
        fleet: Fleet | None = None
        res: dict[str, Any] = {}
        out[kind] = res
        try:
            fleet = Fleet(loaders)
            port = int(server.hello["port"])
            rss0 = gc_rss(server)
            if kind == "tempest":  # every ping from the first handshake on is checked
                fleet.all("arm", 30, seq0=SEQ_BASE, rounds=0, latency=False, pings=True)
            meter = CpuMeter(server.pid, *fleet.pids)
            res["connect"] = fleet.connect(
                n, [port], timeout=min(600, clock.left()), rate=args.connect_rate or None
            )
            wall, (cpu, *loader_cpus) = meter.stop()
            res["connect"]["loader_busy_max"] = max(loader_cpus) / wall
            res["connect"]["server_cpu_s"] = cpu
            res["connect"]["server_cpu_ms_per_handshake"] = (
                cpu / max(1, res["connect"]["connected"]) * 1e3
            )
            res["connect"]["server_busy"] = cpu / wall
            watch_from = time.monotonic()
            res["connections"], _ = wait_total([server], n, min(60, clock.left()))
            # The watch ends before the forced collection below, whose pause (seconds at
            # this N) is the harness's doing, not the server's.
            if kind == "tempest":
                idle = args.idle if args.idle is not None else 3 * beat + 10
                idle_cpu = CpuMeter(server.pid)
                time.sleep(max(0.0, min(watch_from + idle - time.monotonic(), clock.left() - 60)))
                idle_wall, (idle_cpu_s,) = idle_cpu.stop()
                hb = res["heartbeat"] = {
                    "interval_s": beat,
                    "timeout_s": settings.WS_HEARTBEAT_TIMEOUT_SECONDS,
                    "idle_s": time.monotonic() - watch_from,
                    "watched_s": time.monotonic() - watch_from + res["connect"]["seconds"],
                    "expected_min_pings_per_client": int((time.monotonic() - watch_from) / beat),
                    # the idle worker: pings out, pongs in, nothing else
                    "idle_server_busy": idle_cpu_s / max(idle_wall, 1e-9),
                    "idle_server_cpu_us_per_ping": idle_cpu_s
                    / max(1.0, res["connections"] * idle_wall / beat)
                    * 1e6,
                }
                hb.update(fleet.pings(beat))
                log(
                    f"  A tempest heartbeat every {beat:g}s, watched {hb['watched_s']:.0f}s: "
                    f"{hb['pings']} pings (min {hb['min_pings_per_client']} per client), "
                    f"late {hb['late']} (overdue {hb['overdue']}), max gap "
                    f"{hb['gap_max_s'] or 0:.2f}s, clients lost {hb['lost']} "
                    f"(close codes {hb['close_codes']})"
                )
            time.sleep(1.0)
            pauses: list[float] = []
            rss1 = gc_rss(server, pauses)
            res["full_gc_pause_s"] = pauses[0]
            res["rss_base_mb"] = rss0 / 2**20
            res["rss_mb"] = rss1 / 2**20
            res["rss_per_conn_kb"] = (rss1 - rss0) / max(1, res["connections"]) / 1024
            log(
                f"  A {kind:8} N={n}: {res['connections']} open, "
                f"{res['rss_per_conn_kb']:.2f} KB/conn"
            )
            clock.check(f"part A {kind} broadcast")
            pids = [server.pid]
            fleet.phase(server, "paced", SEQ_BASE, 2, interval=interval, server_pids=pids)
            res["broadcast"] = fleet.phase(
                server, "paced", SEQ_BASE + 10, args.rounds, interval=interval, server_pids=pids
            )
            lat = res["broadcast"]["latency_ms"]
            log(
                f"  A {kind:8} broadcast p50 {lat.get('p50', 0):.1f} p99 {lat.get('p99', 0):.1f} ms"
            )
            res["connections_after"] = int(server.request("count")["connections"])
        except Exception as exc:
            res["error"] = repr(exc)
            log(f"  A {kind} failed: {exc!r}")
        finally:
            if fleet is not None:
                fleet.stop()
            server.stop()
    bare, mine = out.get("bare", {}), out.get("tempest", {})
    # Compared only when both servers held all N through the broadcast (same N).
    out["same_n"] = all(
        r.get("connections") == n and r.get("broadcast", {}).get("clients") == n
        for r in (bare, mine)
    )
    if not out["same_n"]:
        return out
    if "rss_per_conn_kb" in bare and "rss_per_conn_kb" in mine:
        out["rss_per_conn_over_bare_kb"] = mine["rss_per_conn_kb"] - bare["rss_per_conn_kb"]
    p99s = [r.get("broadcast", {}).get("latency_ms", {}).get("p99") for r in (mine, bare)]
    if None not in p99s and p99s[1]:
        out["broadcast_p99_vs_bare"] = p99s[0] / p99s[1]
    return out


def part_b(
    n: int, loaders: int, args: argparse.Namespace, clock: Clock, log: Any
) -> dict[str, Any]:
    cap = worker_cap()
    out: dict[str, Any] = {
        "n": n,
        "workers": args.workers,
        "loaders": loaders,
        "topics": args.topics,
        "caps": {
            "WS_MAX_CONNECTIONS": cap,
            "WS_MAX_CONNECTIONS_PER_IP": 0,
            "users": "one per client",
        },
    }
    binary = shutil.which("redis-server")
    if binary is None:
        return {**out, "error": "redis-server not found"}
    redis = RedisProcess(binary)
    workers: list[Child] = []
    fleet: Fleet | None = None
    try:
        for _ in range(args.workers):
            workers.append(
                Child(
                    "bench.server",
                    "tempest",
                    "--redis-url",
                    redis.url,
                    "--topics",
                    str(args.topics),
                    "--max-connections",
                    str(cap),
                )
            )
        fleet = Fleet(loaders)
        ports = [int(w.hello["port"]) for w in workers]
        server_pids = [w.pid for w in workers] + [redis.pid]
        budget = min(900, clock.left())
        out["connect"] = fleet.connect(n, ports, timeout=budget, retry_503_s=budget - 60)
        out["connections"], _ = wait_total(workers, n, min(60, clock.left()))
        out["per_worker"] = [int(w.request("count")["connections"]) for w in workers]
        out["rss_mb_per_worker"] = [gc_rss(w) / 2**20 for w in workers]
        log(
            f"  B N={n}: {out['connections']} open {out['per_worker']} "
            f"in {out['connect']['seconds']:.0f}s"
        )
        time.sleep(1.0)  # topic subscriptions settle
        interval = interval_for(n)
        clock.check("part B broadcast")
        fleet.phase(workers[0], "paced", SEQ_BASE, 2, interval=interval, server_pids=server_pids)
        out["broadcast"] = fleet.phase(
            workers[0],
            "paced",
            SEQ_BASE + 10,
            args.rounds,
            interval=interval,
            server_pids=server_pids,
        )
        clock.check("part B topics")
        out["topics_broadcast"] = fleet.phase(
            workers[0],
            "topics",
            SEQ_BASE + 100,
            args.rounds,
            interval=interval,
            server_pids=server_pids,
        )
        for key in ("broadcast", "topics_broadcast"):
            r = out[key]
            lat = r["latency_ms"]
            log(
                f"  B {key}: {r['delivered']}/{r['expected']} p50 {lat.get('p50', 0):.1f} "
                f"p99 {lat.get('p99', 0):.1f} ms, "
                f"{r['server_cpu_us_per_delivery']:.1f} us CPU/delivery"
            )
        clock.check("part B storm")
        out["storm"] = storm(workers, fleet, n, min(args.storm_limit, clock.left() - 20), log)
    except Exception as exc:
        out["error"] = repr(exc)
        log(f"  B failed: {exc!r}")
    finally:
        if fleet is not None:
            fleet.stop()
        for w in workers:
            w.stop()
        redis.stop()
    return out


def storm(workers: list[Child], fleet: Fleet, n: int, seconds: float, log: Any) -> dict[str, Any]:
    """Drop every connection (1012 from every worker) and time until every dropped one is
    back (``n``, the count held before, is replaced by the count dropped)."""
    before = [w.request("stats", timeout=POLL_S) for w in workers]
    fleet.all("storm_arm", 30, path="/ws", seconds=seconds, seed=1)
    t0 = time.time()
    closed = sum(w.request("drop_all", timeout=60, code=1012)["closed"] for w in workers)
    n = closed  # every connection dropped comes back
    deadline = time.monotonic() + seconds
    statuses: list[dict[str, Any]] = []
    total = 0
    low = n
    timeline: list[list[float]] = []  # [seconds, connections held by each worker...]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        # A worker swamped by the storm answers late; its answer is waited for (the
        # loop's deadline is checked between polls).
        counts = [int(w.request("count", timeout=POLL_S)["connections"]) for w in workers]
        total = sum(counts)
        timeline.append([round(time.time() - t0, 2), *counts])
        low = min(low, total)
        statuses = fleet.all("storm_status", POLL_S)
        back = sum(s["back"] for s in statuses)
        if total >= n and back >= closed:
            break
    all_back_s = time.time() - t0
    server_stats = [w.request("stats", timeout=POLL_S) for w in workers]
    tasks = [w.request("tasks", timeout=POLL_S)["tasks"] for w in workers]
    ports = [int(w.hello["port"]) for w in workers]
    snapshot = _tcp_sockets()  # one listing of the machine's sockets for all three records
    ends = [None if snapshot is None else _both_ends(snapshot, port) for port in ports]
    sockets = [None if e is None else e["worker_ends"].get("ESTAB", 0) for e in ends]
    phantoms = None if snapshot is None else _phantoms(fleet, snapshot, ports)
    attempts: dict[str, int] = {}
    for s in statuses:
        for k, v in s["attempts"].items():
            attempts[k] = attempts.get(k, 0) + v
    last = max((s["last_back"] for s in statuses), default=0.0)
    out = {
        "dropped_by_servers": closed,
        "dropped_seen_by_clients": sum(s["dropped"] for s in statuses),
        "lowest_count_seen": low,
        "back": sum(s["back"] for s in statuses),
        "connections_at_end": total,
        "all_back": total >= n,
        "seconds_until_servers_hold_all": all_back_s if total >= n else None,
        "seconds_until_last_client_back": last - t0 if last else None,
        "gave_up": sum(s["gave_up"] for s in statuses),
        "cap_refusals_seen_by_clients": sum(s["cap_refusals"] for s in statuses),
        "rejected_at_capacity_by_servers": sum(
            a["rejected_at_capacity"] - b["rejected_at_capacity"]
            for a, b in zip(server_stats, before, strict=True)
        ),
        "evicted_over_user_cap_by_servers": sum(
            a["evicted_over_user_cap"] - b["evicted_over_user_cap"]
            for a, b in zip(server_stats, before, strict=True)
        ),
        "handshakes_shed_by_servers": sum(
            a.get("handshakes_shed", 0) - b.get("handshakes_shed", 0)
            for a, b in zip(server_stats, before, strict=True)
        ),
        "failed_attempts": {
            k: sum(s["failures"].get(k, 0) for s in statuses)
            for k in sorted({k for s in statuses for k in s["failures"]})
        },
        "attempts_histogram": dict(sorted(attempts.items(), key=lambda kv: int(kv[0]))),
        "first_delay_p50_s_worst_loader": max((s["delay_p50_s"] or 0) for s in statuses),
        "limit_s": seconds,
        "live_clients": sum(s["live"] for s in statuses),
        "live_clients_closing": sum(s.get("live_closing", 0) for s in statuses),
        "live_clients_not_handshaken": sum(s.get("live_not_handshaken", 0) for s in statuses),
        "client_objects": [(s.get("clients"), s.get("distinct_clients")) for s in statuses],
        "lost_codes": [s["lost_codes"] for s in statuses],
        "server_stats": server_stats,
        "server_tasks_at_end": tasks,
        "server_sockets_at_end": sockets,
        "socket_ends_at_end": ends,
        "phantom_clients": phantoms,
        "timeline": timeline,
        "handshakes_per_s_per_worker": _rates(timeline),
    }
    log(
        f"  B storm: {out['back']}/{closed} back, servers hold {total} after {all_back_s:.1f}s, "
        f"refused at a cap {out['rejected_at_capacity_by_servers']} (server count) / "
        f"{out['cap_refusals_seen_by_clients']} (seen by clients), "
        f"told to retry later (503) {out['handshakes_shed_by_servers']}, "
        f"failed attempts {out['failed_attempts']}"
    )
    return out


def _tcp_sockets() -> list[tuple[str, str, str]] | None:
    """Every TCP socket of the machine as (state, local address, peer address), from
    ``ss``; ``None`` where ``ss`` is missing or fails."""
    try:
        out = subprocess.run(
            ["ss", "-Htan"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [(f[0], f[3], f[4]) for f in (line.split() for line in out.splitlines()) if len(f) >= 5]


def _both_ends(sockets: list[tuple[str, str, str]], port: int) -> dict[str, Any]:
    """Both ends of the loopback TCP connections to ``port`` in ``sockets``
    (`_tcp_sockets()`): the states of the worker's ends and of the clients' ends, and
    the clients' established ends whose worker end is not established (with that end's
    state, or "none")."""
    server: dict[tuple[str, str], str] = {}
    client: dict[tuple[str, str], str] = {}
    for state, local, peer in sockets:
        if local.endswith(f":{port}") and state != "LISTEN":
            server[(local, peer)] = state
        elif peer.endswith(f":{port}"):
            client[(local, peer)] = state
    orphans: dict[str, int] = {}
    for (local, peer), state in client.items():
        if state == "ESTAB":
            other = server.get((peer, local), "none")
            if other != "ESTAB":
                orphans[other] = orphans.get(other, 0) + 1

    def count(ends: dict[tuple[str, str], str]) -> dict[str, int]:
        return dict(sorted(Counter(ends.values()).items()))

    return {"worker_ends": count(server), "client_ends": count(client), "orphans": orphans}


def _phantoms(
    fleet: Fleet, sockets: list[tuple[str, str, str]], ports: list[int]
) -> list[dict[str, Any]]:
    """The live clients (by the loaders' records) whose socket has no connection to a
    worker in ``sockets`` (`_tcp_sockets()`), with what the loader knows of each."""
    wanted = {f":{p}" for p in ports}
    connected = {local for _, local, peer in sockets if any(peer.endswith(p) for p in wanted)}
    found: list[dict[str, Any]] = []
    for loader, answer in enumerate(fleet.all("storm_live", 60)):
        for name, (port, age, status) in answer.get("clients", {}).items():
            if name not in connected:
                found.append(
                    {"loader": loader, "socket": name, "port": port, "age_s": age, "status": status}
                )
    return found[:50]


def _rates(timeline: list[list[float]]) -> list[float]:
    """Each worker's best sustained gain in connections per second over 10 s windows."""
    best: list[float] = []
    for w in range(1, len(timeline[0]) if timeline else 1):
        top = 0.0
        for i, row in enumerate(timeline):
            later = [r for r in timeline[i:] if r[0] - row[0] >= 10.0]
            if later:
                top = max(top, (later[0][w] - row[w]) / (later[0][0] - row[0]))
        best.append(round(top, 1))
    return best


def options() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.scale`` (``python -m bench --with-scale``
    runs it with its defaults)."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    parser.add_argument("--all", action="store_const", dest="part", const="all", help="both parts")
    parser.add_argument("--n-a", type=int, default=19_000, help="connections on the one worker")
    parser.add_argument("--n-b", type=int, default=50_000, help="connections on the machine")
    parser.add_argument("--loaders-a", type=int, default=2)
    parser.add_argument("--loaders-b", type=int, default=6)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10, help="broadcast rounds per phase")
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        help="WS_HEARTBEAT_SECONDS for A, timeout 3x (default: the settings' defaults)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=None,
        help="seconds watched for pings after the connect phase (A; default 3 heartbeats + 10)",
    )
    parser.add_argument(
        "--connect-rate",
        type=float,
        default=500.0,
        help="connection attempts started per second over all loaders in A (0: a flood)",
    )
    parser.add_argument("--storm-limit", type=float, default=240.0, help="storm deadline (s)")
    parser.add_argument("--limit", type=float, default=900.0, help="whole run's limit (s)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: put this result's section into docs/performance.md",
    )
    return parser


def measure(args: argparse.Namespace, command: str, log: Any) -> dict[str, Any]:
    """Run the parts ``args`` asks for and return the result (``command`` is recorded)."""
    clock = Clock(args.limit)
    started = time.monotonic()
    result: dict[str, Any] = {
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_note(),
        "file_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
    }
    if args.part in ("a", "all"):
        log(f"scale: part A, N={args.n_a} on one worker, {args.loaders_a} loaders")
        result["a"] = part_a(args.n_a, args.loaders_a, args, clock, log)
        result["a"]["run"] = run_note(result)
    if args.part in ("b", "all"):
        log(f"scale: part B, N={args.n_b} on {args.workers} workers, {args.loaders_b} loaders")
        try:
            clock.check("part B")
            result["b"] = part_b(args.n_b, args.loaders_b, args, clock, log)
        except TimeoutError as exc:
            result["b"] = {"error": str(exc)}
        result["b"]["run"] = run_note(result)
    result["wall_seconds"] = time.monotonic() - started
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    return result


def run_note(result: dict[str, Any]) -> dict[str, Any]:
    """Which run measured a part: its command, date and the load average around it."""
    machine = result.get("machine", {})
    return {
        "command": result.get("command", ""),
        "date": result.get("date", ""),
        "loadavg_start": machine.get("loadavg_start"),
        "loadavg_end": machine.get("loadavg_end", os.getloadavg()[0]),
        "commit": machine.get("commit", ""),
    }


def carry_over(result: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """``result`` plus the parts it did not run, taken from an ``earlier`` result file
    (each keeps the note of the run that measured it)."""
    for part in ("a", "b"):
        if part not in result and part in earlier:
            result[part] = {"run": run_note(earlier), **earlier[part]}
    return result


def main(argv: list[str] | None = None) -> int:
    args = options().parse_args(argv)
    if args.docs is not None:
        page = ROOT / "docs" / "performance.md"
        page.write_text(splice(page.read_text(), section(json.loads(args.docs.read_text()))))
        return 0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    command = "python -m bench.scale " + " ".join(argv if argv is not None else sys.argv[1:])
    result = measure(args, command.strip(), log)
    if args.part != "all" and args.out.exists():  # one part: the other stays as measured
        carry_over(result, json.loads(args.out.read_text()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(table(result))
    log(f"scale: wrote {args.out} in {result['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
