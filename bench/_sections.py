"""The performance page's sections after the main tables: per-user sends, the stalled
client, heartbeats, two workers through Redis, write system calls, history."""

from __future__ import annotations

import json
from typing import Any

from ._format import KINDS, LABELS, num, times
from ._verdicts import get


def cpu_cell(burst: dict[str, Any]) -> str:
    """A burst's server CPU per message, with its user and kernel parts when measured."""
    total = num(burst.get("server_cpu_us_per_msg"), "{:.1f}")
    user, kernel = burst.get("server_user_us_per_msg"), burst.get("server_kernel_us_per_msg")
    if user is None or kernel is None:
        return total
    return f"{total} ({num(user, '{:.2f}')} / {num(kernel, '{:.2f}')})"


def per_user_section(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The per-user distinct sends table, when the run measured them."""
    lines: list[str] = []
    per_user = [
        (kind, n, runs[kind][n]["per_user"])
        for kind in runs
        for n in runs[kind]
        if "per_user" in runs[kind][n]
    ]
    if per_user:
        lines += [
            "",
            "### Per-user distinct sends",
            "",
            "Every user gets its own envelope each round (serialized per user):",
            "`hub.send_to(user, envelope)` for tempest_ws, `await ws.send_text(...)` per",
            "socket for the bare loop, `await connection.send(...)` for websockets.",
            "",
            "| server | users | msgs/s | CPU µs/msg | loadgen |",
            "|---|---|---|---|---|",
        ]
        for kind, n, pu in per_user:
            lines.append(
                f"| {LABELS[kind]} | {int(n):,} | {num(pu.get('msgs_per_s'))} | "
                f"{num(pu.get('server_cpu_us_per_msg'), '{:.1f}')} | "
                f"{num((pu.get('loadgen_busy') or 0) * 100, '{:.0f}')} % |"
            )
    return lines


def stall_section(runs: dict[str, dict[str, Any]], ns: list[int]) -> list[str]:
    """The stalled client: what it is, and its table."""
    lines: list[str] = []
    lines += [
        "",
        "### The stalled client",
        "",
        "A raw socket completes the handshake and never reads (receive buffer 4 KB). It is",
        "filled first, until the server's send path to it blocks (baselines) or until",
        "tempest_ws's queue for it is half the paced rounds from full (in frames or bytes,",
        "whichever budget binds first); then a paced run goes to everyone including it,",
        "compared with the same paced run just before the stalled client connected. Both",
        "runs are repeated (in turn across servers, as the bursts are) and each p99 shown is",
        "the median of the repeats; the bare loop runs once, as it stays stuck.",
        "The bare loop awaits the full socket and stops for",
        "everyone; `websockets.broadcast()` keeps buffering for it without bound (until its",
        "keepalive ping times out); tempest_ws closes it 1013 mid-run, aborts the transport",
        "when the close frame cannot be written within the close timeout, and frees it.",
        "*Connection freed* is checked with a weak reference after a garbage collection; the",
        "client, which never reads, cannot see the 1013 close frame (it could not be written),",
        "only the end of the stream once it drains its buffer. RSS does not fall back after",
        "the close: CPython and the C allocator keep freed memory for reuse.",
        "",
        "| N | server | others' rounds | p99 with / without the stall | stalled client "
        "| RSS MB before / filled / after close |",
        "|---|---|---|---|---|---|",
    ]
    for n in ns:
        for kind in KINDS:
            run = runs.get(kind, {}).get(str(n)) or {}
            s = run.get("stall")
            if not s:
                continue
            paced = s.get("paced") or {}
            rss = s.get("rss_mb") or {}
            view = s.get("server_view") or {}
            fate = []
            if view.get("closed_code"):
                fate.append(f"closed {view['closed_code']}")
            if view.get("connection_object_freed"):
                fate.append("connection freed")
            client = s.get("client_view") or {}
            if client.get("state"):
                fate.append(f"client sees: {client['state']}")
            if paced.get("stuck"):
                fate.append("server stuck")
            p99s = (get(paced, "latency_ms.p99"), get(s, "paced_without.latency_ms.p99"))
            mbs = (rss.get("before_stalled"), rss.get("after_prefill"), rss.get("after_close"))
            cells = [
                f"{n:,}",
                LABELS[kind],
                f"{paced.get('min_count')} of {paced.get('rounds')}",
                " / ".join(num(v, "{:.1f}") for v in p99s) + " ms",
                ", ".join(fate) or "–",
                " / ".join(num(v, "{:.1f}") for v in mbs),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def heartbeat_section(
    result: dict[str, Any], extra_heartbeats: list[dict[str, Any]] | None
) -> list[str]:
    """The heartbeat check at scale, and the heartbeat-only runs beside it."""
    lines: list[str] = []
    hb = result.get("heartbeat") or {}
    if hb and "error" not in hb:
        lines += [
            "",
            "### Heartbeats at scale",
            "",
            f"{hb['n']:,} idle tempest_ws connections, `WS_HEARTBEAT_SECONDS={hb['interval_s']}`, "
            f"watched for {hb['idle_s']} s: {hb['pings']:,} pings received "
            f"(at least {hb['min_pings_per_client']} per client, "
            f"{hb['expected_pings_per_client']} expected), gap between pings p50 "
            f"{num(hb.get('gap_p50_s'), '{:.3f}')} s, "
            f"p99 {num(hb.get('gap_p99_s'), '{:.3f}')} s, "
            f"max {num(hb.get('gap_max_s'), '{:.3f}')} s; late pings (gap over 1.1 × interval "
            f"+ 50 ms, measured by the clients): **{hb['late']}**; connections lost: "
            f"{hb['lost']}. Server CPU while idle: "
            f"{hb['server_cpu_pct']:.1f} % of a core, "
            f"**{hb['server_cpu_pct_per_1000_conns']:.2f} % per 1,000 connections** "
            f"(each ping is answered by a pong the server reads; at the default 30 s "
            f"cadence that is about "
            f"{hb['server_cpu_pct_per_1000_conns'] * hb['interval_s'] / 30:.2f} % per 1,000).",
            "",
            "Every connection of a router shares one timer: a wheel of buckets at most 50 ms",
            "wide, one `call_at` handle for the earliest, each bucket's pings sent in one",
            "batch. A ping is booked at the moment it was due, so the gap a client sees is the",
            "interval give or take one bucket and the loop's lag. A gap over 1.1 × interval +",
            "50 ms counts as late: the 50 ms is the bucket width, the 10 % the lag a loaded",
            "loop may add. A stalled event loop (a collector pause, a blocking handler) shows",
            "up as a late gap, which is what the check is for.",
        ]
    elif hb:
        lines += ["", f"Heartbeat check failed: {hb['error']}"]
    if extra_heartbeats:
        lines += [
            "",
            "Heartbeat-only runs (`bench/results/heartbeat-*.json`):",
            "",
            "| command | N | interval s | pings | late | max gap s | idle CPU % | % per 1,000 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for extra in extra_heartbeats:
            cells = [
                f"`{extra['command']}`",
                f"{extra['n']:,}",
                f"{extra['interval_s']:g}",
                f"{extra['pings']:,}",
                f"{extra['late']:,}",
                num(extra.get("gap_max_s"), "{:.2f}"),
                num(extra.get("server_cpu_pct"), "{:.1f}"),
                num(extra.get("server_cpu_pct_per_1000_conns"), "{:.2f}"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "`BENCH_GC=off` disables CPython's cyclic garbage collector in the server process",
            "(a diagnosis, not a recommendation). Before the shared heartbeat wheel (commit",
            "`34bf776`: one timer handle per connection, a task and an `asyncio.wait` per",
            "inbound frame), the 2 s check at 10,000 connections saw 9,995 late pings, a",
            "4.17 s max gap and 78 % of a core busy; garbage-collector pauses over that",
            "larger heap and the per-frame tasks made the loop late. Today both runs agree.",
        ]
    return lines


def redis_section(result: dict[str, Any]) -> list[str]:
    """Two workers through Redis, against the in-process hub of the same run."""
    lines: list[str] = []
    lines += ["", "### Two workers through Redis", ""]
    redis_runs = result.get("redis_two_workers") or {}
    if not redis_runs:
        lines.append("Not run in this mode.")
    else:
        lines += [
            "Two tempest_ws uvicorn worker processes share one `redis-server` (`WS_REDIS_URL`);",
            "half the clients are on each, and worker A publishes, so half the deliveries",
            "cross Redis pub/sub. CPU counts both workers and Redis. Compared with the",
            "in-process hub at the same N in this run. (`python -m bench.backplane` measures",
            "the backplane itself in more depth: topics, one subscriber, Redis Cluster.)",
            "",
            "| N | status | burst msgs/s | × in-process | paced p50 / p99 ms | × in-process p99 "
            "| CPU µs/msg (2 workers + Redis) | every round |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, red in sorted(redis_runs.items(), key=lambda kv: int(kv[0])):
            rr = get(result, f"ratios.{key}.redis_two_workers_vs_in_process") or {}
            lat = get(red, "paced.latency_ms") or {}
            every = get(red, "paced.min_count") == get(red, "paced.rounds") and not get(
                red, "paced.order_errors"
            )
            cells = [
                f"{int(key):,}",
                str(red.get("status")),
                num(get(red, "burst.msgs_per_s")),
                times(rr.get("burst_throughput")),
                " / ".join(num(lat.get(q), "{:.1f}") for q in ("p50", "p99")),
                times(rr.get("paced_p99")),
                num(get(red, "burst.server_cpu_us_per_msg"), "{:.1f}"),
                "yes" if every else "**no**",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def tight_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The table of bursts published all in one event-loop tick, when the run has them."""
    rows = [
        (int(n), kind, tight)
        for kind in KINDS
        for n, run in runs.get(kind, {}).items()
        if isinstance(tight := run.get("tight"), dict) and tight.get("msgs_per_s")
    ]
    if not rows:
        return []
    picows = {n: t["msgs_per_s"] for n, kind, t in rows if kind == "picows"}
    lines = [
        "",
        "### All broadcasts of a burst in one tick",
        "",
        "The burst's rounds published back to back without yielding, as a batch job's loop",
        "publishes them: tempest_ws writes each socket's frames of the tick with one call.",
        "",
        "| N | server | msgs/s | × picows | CPU µs/msg |",
        "|---|---|---|---|---|",
    ]
    for n, kind, tight in sorted(rows, key=lambda r: (r[0], KINDS.index(r[1]))):
        base = picows.get(n)
        versus = tight["msgs_per_s"] / base if base else None
        lines.append(
            f"| {n:,} | {LABELS[kind]} | {num(tight['msgs_per_s'])} | "
            f"{num(versus, '{:.2f}×')} | {num(tight.get('server_cpu_us_per_msg'), '{:.1f}')} |"
        )
    return lines


def syscall_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The write-syscalls-per-frame table, when the run counted them."""
    rows = [
        (int(n), kind, counts)
        for kind in KINDS
        for n, run in runs.get(kind, {}).items()
        if isinstance(counts := run.get("syscalls"), dict) and "error" not in counts
    ]
    if not rows:
        return []
    lines = [
        "",
        "### Write system calls per delivered frame",
        "",
        "| N | server | one broadcast per tick | all broadcasts in one tick |",
        "|---|---|---|---|",
    ]
    for n, kind, counts in sorted(rows, key=lambda r: (r[0], KINDS.index(r[1]))):
        burst, tight = (num(counts.get(op), "{:.3f}") for op in ("burst", "tight"))
        lines.append(f"| {n:,} | {LABELS[kind]} | {burst} | {tight} |")
    return lines


def history_section(result: dict[str, Any]) -> list[str]:
    """The history comparison of this run (``--with-history``), else the last
    ``python -m bench.history`` run (``bench/results/history.json``), if any."""
    from .history import RESULTS, markdown_section

    if "history" in result:
        return markdown_section(result["history"])
    return markdown_section(json.loads(RESULTS.read_text())) if RESULTS.exists() else []


def ceiling_section() -> list[str]:
    """The last ``python -m bench.ceiling`` run (``bench/results/ceiling.json``), if any."""
    from .ceiling import RESULTS, markdown_section

    return markdown_section(json.loads(RESULTS.read_text())) if RESULTS.exists() else []


def events_section() -> list[str]:
    """The last ``python -m bench.events`` run (``bench/results/events.json``), if any."""
    from .events import RESULTS, markdown_section

    return markdown_section(json.loads(RESULTS.read_text())) if RESULTS.exists() else []
