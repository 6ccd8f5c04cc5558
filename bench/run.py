"""The scenarios: one fresh server process and one load generator per (server, N).

For each server kind and each N, in this order: idle RSS per connection and idle CPU,
burst throughput (repeated, median kept), paced latency, per-user distinct sends (at
N = the per-user count), RSS growth after the traffic, and last the stalled client (last
because it leaves the bare loop stuck for good). A separate tempest_ws server with a short
heartbeat checks that pings stay on time while idle. Ratios are computed only between
figures measured in this same run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tempest_ws import WebSocketSettings

from ._proc import ChildTimeout, CpuMeter, SyscallCounter
from ._session import PACED_INTERVAL, Plan, Session, median_run
from ._verdicts import finish, get
from ._wire import ENVELOPE_BYTES
from .redis_case import two_workers


def bench_settings(
    heartbeat: float | None = None,
    queue_size: int | None = None,
    redis_url: str | None = None,
    max_connections: int | None = None,
) -> WebSocketSettings:
    """The tempest_ws settings every benchmark server uses (defaults, caps raised)."""
    values: dict[str, Any] = {
        "WS_MAX_CONNECTIONS": max_connections or 100_000,
        "WS_MAX_CONNECTIONS_PER_USER": 5,
    }
    if redis_url is not None:
        values["WS_REDIS_URL"] = redis_url
    if heartbeat is not None:
        values["WS_HEARTBEAT_SECONDS"] = heartbeat
        values["WS_HEARTBEAT_TIMEOUT_SECONDS"] = heartbeat * 3
    if queue_size is not None:
        values["WS_SEND_QUEUE_SIZE"] = queue_size
    return WebSocketSettings(_env_file=None, **values)  # type: ignore[call-arg]


def user_kernel_seconds(pid: int) -> tuple[float, float]:
    """The user and kernel CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def timed_burst(session: Session, rounds: int) -> dict[str, Any]:
    """One burst, its server CPU per delivered message split into user and kernel time
    (read around the phase: the arm and wait requests add a little, alike for all)."""
    user0, kernel0 = user_kernel_seconds(session.server.pid)
    # Latency from the timestamp in the payload, read at receipt as in the paced phase:
    # two slices and an append per frame in the load generator.
    out = session.phase("burst", rounds, latency=True)
    user1, kernel1 = user_kernel_seconds(session.server.pid)
    delivered = max(1, out.get("delivered") or 0)
    out["server_user_us_per_msg"] = (user1 - user0) / delivered * 1e6
    out["server_kernel_us_per_msg"] = (kernel1 - kernel0) / delivered * 1e6
    return out


def count_syscalls(session: Session, n: int, plan: Plan) -> dict[str, Any]:
    """Write-type system calls of the server per delivered frame, counted with ``strace``
    (which slows the server: these phases are not timed), for ``burst`` (one broadcast
    per event-loop tick) and ``tight`` (every broadcast of the phase in one tick)."""
    rounds = max(5, min(20, 20_000 // n))
    out: dict[str, Any] = {}
    for op in ("burst", "tight"):
        path = Path(tempfile.mkdtemp(prefix="bench-strace-")) / "count.txt"
        try:
            counter = SyscallCounter(session.server.pid, path)
        except (OSError, RuntimeError) as exc:
            return {"error": repr(exc)}
        try:
            got = session.phase(op, rounds, latency=False)
        finally:
            calls = counter.stop()
        path.unlink(missing_ok=True)
        path.parent.rmdir()
        delivered = got.get("delivered") or 0
        out[op] = round(calls / delivered, 4) if delivered else None
    return out


def paced_rounds_for(plan: Plan, n: int) -> int:
    """The plan's paced rounds, fewer past a million deliveries (N = 10,000)."""
    return max(20, min(plan.paced_rounds, 1_000_000 // n))


def measure_n(n: int, plan: Plan, log: Any, trees: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every phase at one N for every server kind, interleaved.

    All servers are up at once (each with its own load generator, idle when not in use),
    and each phase runs on one server after another, repeated in turn, so that a change
    in the machine's background load hits every server alike.
    """
    outs: dict[str, dict[str, Any]] = {}
    sessions: dict[str, Session] = {}
    try:
        for kind in plan.kinds:
            outs[kind] = {"kind": kind, "n": n}
            try:
                sessions[kind] = Session(kind, tree=trees.get(kind))
            except (ChildTimeout, OSError, KeyError) as exc:
                outs[kind]["error"] = repr(exc)
                log(f"  {kind} failed to start: {exc!r}")
        time.sleep(0.3)
        for kind, session in sessions.items():
            out = outs[kind]
            rss0 = session.rss()
            conn = session.connect(n)
            out["connect"] = conn
            if conn["connected"] < n:
                out["error"] = f"only {conn['connected']} of {n} connected"
            time.sleep(0.5)
            rss1 = session.rss()
            out["rss_base_mb"] = rss0 / 2**20
            out["rss_conn_mb"] = rss1 / 2**20
            out["rss_per_conn_kb"] = (rss1 - rss0) / max(1, conn["connected"]) / 1024
            meter = CpuMeter(session.server.pid)
            time.sleep(plan.idle_seconds)
            wall, (idle_cpu,) = meter.stop()
            out["idle_cpu_pct"] = idle_cpu / wall * 100

        rounds = max(10, min(plan.burst_max_rounds, plan.burst_deliveries // n))
        bursts: dict[str, list[dict[str, Any]]] = {k: [] for k in sessions}
        if plan.mode != "tiny":
            for session in sessions.values():
                session.phase("burst", min(rounds, 20), latency=False)  # warm-up, not kept
        for _ in range(plan.burst_repeats):
            for kind, session in sessions.items():
                bursts[kind].append(timed_burst(session, rounds))
        for kind in sessions:
            outs[kind]["burst"] = median_run(bursts[kind])
            burst = outs[kind]["burst"]
            burst["all_p99_ms"] = [get(r, "latency_ms.p99") for r in bursts[kind]]
            lat = burst.get("latency_ms") or {}
            log(
                f"  {kind:11} N={n:<6} burst {burst.get('msgs_per_s') or 0:>10,.0f} msg/s, "
                f"CPU {burst.get('server_cpu_us_per_msg') or 0:.2f} us/msg "
                f"(user {burst.get('server_user_us_per_msg') or 0:.2f}, "
                f"kernel {burst.get('server_kernel_us_per_msg') or 0:.2f}), "
                f"p50 {lat.get('p50', 0):.1f} p99 {lat.get('p99', 0):.1f} ms"
            )
        if plan.tight:
            tights: dict[str, list[dict[str, Any]]] = {k: [] for k in sessions}
            for _ in range(plan.burst_repeats):
                for kind, session in sessions.items():
                    tights[kind].append(session.phase("tight", rounds, latency=False))
            for kind in sessions:
                tight = outs[kind]["tight"] = median_run(tights[kind])
                log(
                    f"  {kind:11} N={n:<6} tight {tight.get('msgs_per_s') or 0:>10,.0f} msg/s, "
                    f"CPU {tight.get('server_cpu_us_per_msg') or 0:.2f} us/msg"
                )
        if plan.syscalls and shutil.which("strace"):
            for kind, session in sessions.items():
                outs[kind]["syscalls"] = count_syscalls(session, n, plan)
                log(f"  {kind:11} N={n:<6} write syscalls per frame {outs[kind]['syscalls']}")

        paced_rounds = paced_rounds_for(plan, n)
        for kind, session in sessions.items():
            outs[kind]["paced"] = session.phase(
                "paced",
                paced_rounds,
                latency=True,
                interval=PACED_INTERVAL,
                budget=paced_rounds * PACED_INTERVAL * 10 + 10,
            )
            lat = outs[kind]["paced"].get("latency_ms", {})
            log(
                f"  {kind:11} N={n:<6} paced "
                f"p50 {lat.get('p50', 0):.1f} p99 {lat.get('p99', 0):.1f} ms"
            )

        if n == plan.per_user_users:
            per_user: dict[str, list[dict[str, Any]]] = {k: [] for k in sessions}
            for _ in range(plan.burst_repeats):
                for kind, session in sessions.items():
                    per_user[kind].append(
                        session.phase("per_user", plan.per_user_rounds, latency=False, users=n)
                    )
            for kind in sessions:
                outs[kind]["per_user"] = median_run(per_user[kind])
                log(
                    f"  {kind:11} N={n:<6} per-user "
                    f"{outs[kind]['per_user'].get('msgs_per_s') or 0:>9,.0f} msg/s"
                )

        for kind, session in sessions.items():
            outs[kind]["rss_after_traffic_mb"] = session.rss() / 2**20
        # The bare loop stays stuck behind the stalled client: it goes last, once.
        # Repeated in turn like the bursts; the median p99 of each side is kept.
        stalls: dict[str, list[dict[str, Any]]] = {k: [] for k in sessions}
        for _ in range(plan.burst_repeats):
            for kind in sorted(sessions, key=lambda k: k == "bare"):
                session = sessions[kind]
                if session.stuck:
                    continue
                stalls[kind].append(
                    stall(session, n, plan, outs[kind]["paced"].get("seconds") or 10.0)
                )
        for kind in sessions:
            outs[kind]["stall"] = _median_stall(stalls[kind])
            log(f"  {kind:11} N={n:<6} stall {summary_stall(outs[kind]['stall'])}")
    finally:
        for session in sessions.values():
            session.close()
    return outs


def stall(session: Session, n: int, plan: Plan, paced_seconds: float) -> dict[str, Any]:
    """A raw client that completes the handshake and never reads, during a paced run.

    It is filled first (until the server's send path to it blocks, or for tempest_ws
    until its queue is half the paced rounds from full), so the paced run shows what
    happens while a full client is in every broadcast, and tempest_ws closes it mid-run.
    """
    rounds = min(plan.stall_rounds, paced_rounds_for(plan, n))
    budget = paced_seconds * rounds / paced_rounds_for(plan, n) * 2 + 3
    out: dict[str, Any] = {}
    # The comparison run without the stalled client, right before it, same length.
    out["paced_without"] = session.phase(
        "paced", rounds, latency=True, interval=PACED_INTERVAL, budget=budget + 10
    )
    opened = session.loadgen.request(
        "stall_open", timeout=20, port=session.port, path="/ws", token="stalled"
    )
    out["opened"] = opened.get("ok", False)
    session.wait_count(n + 1)
    rss_a = session.rss()
    out["prefill"] = session.server.request(
        "prefill_stalled", timeout=30, overflow_after=rounds // 2, timeout_s=15
    )
    rss_b = session.rss()
    out["paced"] = session.phase(
        "paced", rounds, latency=True, interval=PACED_INTERVAL, budget=budget
    )
    out["others_saw_every_round"] = (
        out["paced"]["min_count"] == rounds and out["paced"]["order_errors"] == 0
    )
    if not session.stuck:
        time.sleep(2.5)  # the close timeout (2 s) after which a stuck close is aborted
        out["server_view"] = session.server.request("stalled_status", timeout=20)
    out["client_view"] = session.loadgen.request("stall_check", timeout=20)
    if not session.stuck:
        rss_c = session.rss()
        out["rss_mb"] = {
            "before_stalled": rss_a / 2**20,
            "after_prefill": rss_b / 2**20,
            "after_close": rss_c / 2**20,
        }
    return out


def _p99(run: dict[str, Any]) -> float | None:
    value = get(run, "latency_ms.p99")
    return None if value is None else float(value)


def _median_stall(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One stall result from repeats: the median-p99 paced run of each side (with and
    without the stalled client), the other fields from the run whose stalled side is
    the median; every repeat's p99 and verdicts alongside."""
    if not runs:
        return {}
    ranked = sorted(runs, key=lambda r: _p99(r.get("paced", {})) or float("inf"))
    out = dict(ranked[len(ranked) // 2])
    without = sorted(
        (r["paced_without"] for r in runs if "paced_without" in r),
        key=lambda p: _p99(p) or float("inf"),
    )
    if without:
        out["paced_without"] = without[len(without) // 2]
    out["repeats"] = len(runs)
    out["all_p99_ms"] = [_p99(r.get("paced", {})) for r in runs]
    out["all_p99_without_ms"] = [_p99(r.get("paced_without", {})) for r in runs]
    out["others_saw_every_round"] = all(r.get("others_saw_every_round") for r in runs)
    out["all_closed_codes"] = [get(r, "server_view.closed_code") for r in runs]
    return out


def summary_stall(s: dict[str, Any]) -> str:
    paced = s.get("paced", {})
    seen = f"others saw {paced.get('min_count')} of {paced.get('rounds')} rounds"
    if paced.get("stuck"):
        return seen + ", then stuck"
    code = s.get("server_view", {}).get("closed_code")
    p99 = paced.get("latency_ms", {}).get("p99")
    repeats = f" (median of {s['repeats']})" if s.get("repeats", 1) > 1 else ""
    return f"{seen}, p99 {p99 if p99 is None else round(p99, 1)} ms{repeats}, stalled closed {code}"


def heartbeat(plan: Plan, n: int, log: Any, tree: str | None = None) -> dict[str, Any]:
    """tempest_ws (from ``tree`` if given) with a short heartbeat and N idle clients that
    answer pings."""
    interval = plan.heartbeat_interval
    session = Session("tempest", "--heartbeat", str(interval), tree=tree)
    out: dict[str, Any] = {"n": n, "interval_s": interval, "idle_s": plan.heartbeat_idle}
    try:
        out["connect"] = session.connect(n)
        session.loadgen.request("arm", seq0=session.seq, rounds=0, latency=False, pings=True)
        meter = CpuMeter(session.server.pid)
        time.sleep(plan.heartbeat_idle)
        wall, (cpu,) = meter.stop()
        out.update(session.loadgen.request("pings", timeout=30, interval=interval))
        out["expected_pings_per_client"] = int(plan.heartbeat_idle / interval)
        out["server_cpu_pct"] = cpu / wall * 100
        out["server_cpu_pct_per_1000_conns"] = cpu / wall * 100 / (n / 1000)
        out["connections_after"] = session.server.request("count")["connections"]
        log(
            f"  heartbeat N={n}: {out['pings']} pings, late {out['late']}, "
            f"max gap {out['gap_max_s'] or 0:.3f}s, idle CPU {out['server_cpu_pct']:.1f}%"
        )
    finally:
        session.close()
    return out


def run(plan: Plan, log: Any, trees: dict[str, str] | None = None) -> dict[str, Any]:
    """Every server kind at every N, then the heartbeat check; returns the results dict.

    ``trees`` maps extra kinds (``tempest_ref``) to another checkout's path: that server
    imports tempest_ws from there, for before/after comparisons in one run.
    """
    started = time.monotonic()
    runs: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in plan.kinds}
    for n in plan.ns:
        try:
            for kind, out in measure_n(n, plan, log, trees or {}).items():
                runs[kind][str(n)] = out
        except (ChildTimeout, OSError, KeyError) as exc:
            for kind in plan.kinds:
                runs[kind].setdefault(str(n), {"kind": kind, "n": n, "error": repr(exc)})
            log(f"  N={n} failed: {exc!r}")
    result: dict[str, Any] = {
        "schema": 1,
        "plan": asdict(plan),
        "envelope_bytes": ENVELOPE_BYTES,
        "paced_interval_s": PACED_INTERVAL,
        "runs": runs,
    }
    try:
        result["heartbeat"] = heartbeat(plan, plan.heartbeat_n, log, (trees or {}).get("tempest"))
    except (ChildTimeout, OSError, KeyError) as exc:
        result["heartbeat"] = {"error": repr(exc)}
    result["redis_two_workers"] = {
        str(n): two_workers(n, plan, log, (trees or {}).get("tempest")) for n in plan.redis_ns
    }
    finish(result)
    result["seconds"] = time.monotonic() - started
    return result
