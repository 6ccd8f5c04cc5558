"""The scenarios: one fresh server process and one load generator per (server, N).

For each server kind and each N, in this order: idle RSS per connection and idle CPU,
burst throughput (repeated, median kept), paced latency, per-user distinct sends (at
N = the per-user count), RSS growth after the traffic, and last the stalled client (last
because it leaves the bare loop stuck for good). A separate tempest_ws server with a short
heartbeat checks that pings stay on time while idle. Ratios are computed only between
figures measured in this same run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tempest_ws import WebSocketSettings

from ._proc import Child, ChildTimeout, CpuMeter, SyscallCounter, rss_bytes
from ._wire import ENVELOPE_BYTES, SEQ_BASE

KINDS = ("bare", "native", "picows", "tempest")
PACED_INTERVAL = 0.02
RSS_MIN_N = 1000  # the RSS target is judged from this N up (resolution, see targets())
LOADGEN_BUSY = 0.9  # a load generator above this share of one core is the bottleneck


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


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("msgs_per_s")]
    if not ok:
        return runs[0] if runs else {}
    ok.sort(key=lambda r: r["msgs_per_s"])
    best = dict(ok[len(ok) // 2])
    best["all_msgs_per_s"] = [r["msgs_per_s"] for r in runs if r.get("msgs_per_s")]
    best["all_cpu_us_per_msg"] = [r["server_cpu_us_per_msg"] for r in runs]
    return best


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
                bursts[kind].append(session.phase("burst", rounds, latency=False))
        for kind in sessions:
            outs[kind]["burst"] = _median_run(bursts[kind])
            burst = outs[kind]["burst"]
            log(
                f"  {kind:11} N={n:<6} burst {burst.get('msgs_per_s') or 0:>10,.0f} msg/s, "
                f"CPU {burst.get('server_cpu_us_per_msg') or 0:.2f} us/msg"
            )
        if plan.tight:
            tights: dict[str, list[dict[str, Any]]] = {k: [] for k in sessions}
            for _ in range(plan.burst_repeats):
                for kind, session in sessions.items():
                    tights[kind].append(session.phase("tight", rounds, latency=False))
            for kind in sessions:
                tight = outs[kind]["tight"] = _median_run(tights[kind])
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
                outs[kind]["per_user"] = _median_run(per_user[kind])
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
    value = _get(run, "latency_ms.p99")
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
    out["all_closed_codes"] = [_get(r, "server_view.closed_code") for r in runs]
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


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def ratios(runs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """tempest_ws against each baseline, per N, from figures of this run only."""
    table: dict[str, Any] = {}
    tempest = runs.get("tempest", {})
    for key, mine in tempest.items():
        row: dict[str, Any] = {}
        for base in ("bare", "native", "picows", "tempest_ref"):
            other = runs.get(base, {}).get(key)
            if other is None:
                continue
            row[f"vs_{base}"] = {
                "burst_throughput": ratio(
                    _get(mine, "burst.msgs_per_s"), _get(other, "burst.msgs_per_s")
                ),
                "paced_p99": ratio(
                    _get(mine, "paced.latency_ms.p99"), _get(other, "paced.latency_ms.p99")
                ),
                "cpu_per_msg": ratio(
                    _get(mine, "burst.server_cpu_us_per_msg"),
                    _get(other, "burst.server_cpu_us_per_msg"),
                ),
                "tight_throughput": ratio(
                    _get(mine, "tight.msgs_per_s"), _get(other, "tight.msgs_per_s")
                ),
                "tight_cpu_per_msg": ratio(
                    _get(mine, "tight.server_cpu_us_per_msg"),
                    _get(other, "tight.server_cpu_us_per_msg"),
                ),
                "rss_per_conn_delta_kb": _diff(
                    _get(mine, "rss_per_conn_kb"), _get(other, "rss_per_conn_kb")
                ),
                "per_user_throughput": ratio(
                    _get(mine, "per_user.msgs_per_s"), _get(other, "per_user.msgs_per_s")
                ),
            }
        row["stall_p99_vs_no_stall"] = _stall_ratio(mine)
        # websockets.broadcast() never waits for the stalled socket: its own ratio shows
        # how much p99 moves between two paced runs on this machine anyway.
        row["native_control_stall_p99_vs_no_stall"] = _stall_ratio(
            runs.get("native", {}).get(key, {})
        )
        table[key] = row
    return table


def _stall_ratio(run: dict[str, Any]) -> float | None:
    return ratio(
        _get(run, "stall.paced.latency_ms.p99"), _get(run, "stall.paced_without.latency_ms.p99")
    )


def _get(d: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets, each judged on this run's ratios (``None``: not measured)."""
    rows: list[dict[str, Any]] = []
    table = result["ratios"]

    def add(name: str, value: float | None, ok: bool | None) -> None:
        rows.append({"target": name, "value": value, "met": ok})

    for key in sorted(table, key=int):
        r = table[key]
        bare, native = r.get("vs_bare", {}), r.get("vs_native", {})
        v = bare.get("burst_throughput")
        add(f"N={key}: burst >= 1.0x bare loop", v, None if v is None else v >= 1.0)
        v = native.get("burst_throughput")
        add(f"N={key}: burst >= 0.9x websockets native (aim)", v, None if v is None else v >= 0.9)
        v = bare.get("paced_p99")
        add(f"N={key}: paced p99 <= bare loop", v, None if v is None else v <= 1.0)
        v = bare.get("cpu_per_msg")
        add(f"N={key}: CPU per message <= bare loop", v, None if v is None else v <= 1.0)
        v = bare.get("rss_per_conn_delta_kb")
        if int(key) >= RSS_MIN_N:
            add(
                f"N={key}: RSS per idle connection <= bare + 2 KB",
                v,
                None if v is None else v <= 2.0,
            )
        else:
            # One 256 KiB allocator arena is 2.6 KB per connection at N=100: the
            # difference of two RSS readings cannot resolve a 2 KB target there.
            add(f"N={key}: RSS per idle connection (below resolution, not judged)", v, None)
        v = r.get("stall_p99_vs_no_stall")
        control = r.get("native_control_stall_p99_vs_no_stall")
        note = "" if control is None else f" (websockets control: {control:.2f})"
        add(
            f"N={key}: stalled client: others' p99 within 10%{note}",
            v,
            None if v is None else v <= 1.10,
        )
        v = bare.get("per_user_throughput")
        if v is not None:
            add(f"N={key}: per-user sends >= 1.0x bare loop", v, v >= 1.0)
    hb = result.get("heartbeat") or {}
    if hb:
        add(
            f"heartbeat N={hb['n']}: every ping on time",
            hb.get("late"),
            hb.get("late") == 0 and hb.get("lost") == 0,
        )
    return rows


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
        result["heartbeat"] = heartbeat(plan, plan.heartbeat_n, log, trees.get("tempest"))
    except (ChildTimeout, OSError, KeyError) as exc:
        result["heartbeat"] = {"error": repr(exc)}
    from .redis_case import two_workers

    result["redis_two_workers"] = {
        str(n): two_workers(n, plan, log, (trees or {}).get("tempest")) for n in plan.redis_ns
    }
    finish(result)
    result["seconds"] = time.monotonic() - started
    return result


def finish(result: dict[str, Any]) -> None:
    """Compute the ratios and the target verdicts from the raw figures (in place)."""
    runs = result["runs"]
    result["ratios"] = ratios(runs)
    for key, redis in result.get("redis_two_workers", {}).items():
        local = runs.get("tempest", {}).get(key, {})
        if key in result["ratios"]:
            result["ratios"][key]["redis_two_workers_vs_in_process"] = {
                "burst_throughput": ratio(
                    _get(redis, "burst.msgs_per_s"), _get(local, "burst.msgs_per_s")
                ),
                "paced_p99": ratio(
                    _get(redis, "paced.latency_ms.p99"), _get(local, "paced.latency_ms.p99")
                ),
                "cpu_per_msg": ratio(
                    _get(redis, "burst.server_cpu_us_per_msg"),
                    _get(local, "burst.server_cpu_us_per_msg"),
                ),
            }
    result["targets"] = targets(result)
