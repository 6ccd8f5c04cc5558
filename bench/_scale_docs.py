"""The "Connection counts" section of ``docs/performance.md`` and the console table,
from a ``bench.scale`` result.

``python -m bench.scale --docs`` splices it into the page (replacing the section if it
is there), and ``python -m bench`` keeps it when it renders the page again.
"""

from __future__ import annotations

from typing import Any

HEADING = "## Connection counts"
BEFORE = "## How tempest_ws fans out"


def _ms(run: dict[str, Any]) -> str:
    lat = run.get("latency_ms") or {}
    if not lat:
        return "–"
    return f"{lat['p50']:.1f} / {lat['p99']:.1f}"


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def section(result: dict[str, Any], source: str = "`bench/results/scale.json`") -> str:
    """Markdown for one ``bench.scale`` result, kept in ``source``."""
    machine = result.get("machine", {})
    parts = [result[p] for p in ("a", "b") if result.get(p)]
    runs = {(p.get("run") or {}).get("date") for p in parts}
    if len(runs) > 1:  # the parts come from separate runs: each names its own
        head = "Each part below names the run that measured it, on a machine shared with other work"
    else:
        head = (
            f"`{result.get('command', 'python -m bench.scale')}` ({result.get('date', '')}, "
            f"load average {machine.get('loadavg_start', 0):.1f} at the start and "
            f"{machine.get('loadavg_end', 0):.1f} at the end, on a machine shared with other "
            "work"
        )
    lines = [
        HEADING,
        "",
        f"{head}; file limit {_num(result.get('file_limit', [0, 0])[1])} per process. "
        "Client sockets come from several load-generator processes and loopback source "
        "addresses; latencies are from the publish to the client's read.",
        "",
    ]
    a = result.get("a")
    if a:
        lines += _run_line(a, len(runs) > 1) + _part_a(a)
    b = result.get("b")
    if b:
        lines += _run_line(b, len(runs) > 1)
    if b and "error" not in b:
        s = b.get("storm", {})
        own = b.get("run")  # part B run on its own, after part A's run above
        if own:
            m = own.get("machine", own)  # see scale.run_note
            lines += [
                f"Part B below: `{own.get('command')}` ({own.get('date')}, commit "
                f"{m.get('commit')}, load average {m.get('loadavg_start', 0):.1f} at the start "
                f"and {m.get('loadavg_end', 0):.1f} at the end).",
                "",
            ]
        lines += [
            f"**{_num(b.get('n'))} connections on one machine**: {b.get('workers')} tempest_ws "
            f"workers (one process and port each, `WS_MAX_CONNECTIONS="
            f"{_num(b.get('caps', {}).get('WS_MAX_CONNECTIONS'))}` each, no per-IP cap, one "
            f"user per client) sharing one redis-server; held {_num(b.get('connections'))} "
            f"after the connect phase ({_num(b.get('connect', {}).get('failed'))} clients "
            "not connected; "
            f"{_num(b.get('connect', {}).get('retried_503', 0))} attempts answered HTTP 503 "
            "while `WS_MAX_PENDING_HANDSHAKES` handshakes were in progress and retried after "
            "its `Retry-After`) "
            f"({', '.join(_num(x) for x in b.get('per_worker', []))}); worker RSS "
            f"{', '.join(f'{x:.0f}' for x in b.get('rss_mb_per_worker', []))} MB. One worker "
            f"publishes; the others get it through Redis. Each client is in one of "
            f"{b.get('topics')} topics; a topic round publishes to all of them. "
            f"{b.get('broadcast', {}).get('rounds')} rounds each, one every "
            f"{b.get('broadcast', {}).get('interval_s', 0):.2f} s. CPU counts the workers and "
            "Redis.",
            "",
            "| | deliveries | p50 / p99 ms | CPU per delivery |",
            "|---|---|---|---|",
        ]
        for key, label in (
            ("broadcast", "broadcast to everyone"),
            ("topics_broadcast", "to topics"),
        ):
            r = b.get(key, {})
            lines.append(
                f"| {label} | {_num(r.get('delivered'))} of {_num(r.get('expected'))} "
                f"| {_ms(r)} | {_num(r.get('server_cpu_us_per_delivery'), 1)} µs |"
            )
        lines += ["", _storm(b, s), ""]
    elif b:
        lines += [f"Part B did not complete: {b['error']}", ""]
    lines.append(f"Raw results: {source}.")
    return "\n".join(lines) + "\n"


def _run_line(part: dict[str, Any], shown: bool) -> list[str]:
    run = part.get("run")
    if not shown or not run:
        return []
    return [
        f"`{run['command']}` ({run['date']}, load average {run['loadavg_start'] or 0:.1f} at "
        f"the start and {run['loadavg_end'] or 0:.1f} at the end):",
        "",
    ]


def _part_a(a: dict[str, Any]) -> list[str]:
    bare, mine = a.get("bare", {}), a.get("tempest", {})
    hb = mine.get("heartbeat", {})
    hs = a.get("heartbeat_settings", {})
    rate = a.get("connect_rate")
    which = "the defaults" if hs.get("source") == "defaults" else "set for the run"
    lines = [
        f"**One worker at its file limit**: {_num(a.get('n'))} idle connections on one "
        f"uvicorn worker (`WS_MAX_CONNECTIONS={_num(a.get('max_connections'))}`), the bare "
        "FastAPI loop first at the same N, in the same run"
        + (f", both connected at up to {_num(rate)} new connections a second" if rate else "")
        + f". Heartbeat: `WS_HEARTBEAT_SECONDS={hb.get('interval_s', '–')}`, "
        f"`WS_HEARTBEAT_TIMEOUT_SECONDS={hb.get('timeout_s', '–')}` ({which}); every ping "
        f"each client got from its handshake on was checked, over "
        f"{_num(hb.get('watched_s'))} s (the connect phase, then "
        f"{_num(hb.get('idle_s'))} s idle). A ping is late when it comes more than "
        "10 % + 50 ms after the previous one (or the handshake), or has not come by then.",
        "",
        "| | bare FastAPI loop | tempest_ws |",
        "|---|---|---|",
        f"| connections held | {_num(bare.get('connections'))} | {_num(mine.get('connections'))} |",
        f"| connect phase: seconds / server CPU per handshake "
        f"| {_connect(bare)} | {_connect(mine)} |",
        f"| RSS per connection | {_num(bare.get('rss_per_conn_kb'), 1)} KB "
        f"| {_num(mine.get('rss_per_conn_kb'), 1)} KB |",
        f"| broadcast to all, p50 / p99 ms ({mine.get('broadcast', {}).get('rounds', '–')} "
        f"rounds, one every {mine.get('broadcast', {}).get('interval_s', 0):.2f} s) "
        f"| {_ms(bare.get('broadcast', {}))} | {_ms(mine.get('broadcast', {}))} |",
        f"| every client got every round, in order | "
        f"{_every(bare.get('broadcast', {}))} | {_every(mine.get('broadcast', {}))} |",
        f"| heartbeat pings (fewest per client) / late "
        f"| – | {_num(hb.get('pings'))} ({_num(hb.get('min_pings_per_client'))}) / "
        f"**{_num(hb.get('late'))}** (longest gap {_num(hb.get('gap_max_s'), 1)} s) |",
        f"| clients closed by the server meanwhile | – | {_num(hb.get('lost'))} "
        f"(codes {hb.get('close_codes') or 'none'}) |",
    ]
    if "full_gc_pause_s" in mine:
        gcs = [_num(r.get("full_gc_pause_s"), 1) for r in (bare, mine)]
        lines.append(
            "| one full garbage collection (`gc.collect()`) at N: the event loop held for "
            f"| {gcs[0]} s | {gcs[1]} s |"
        )
    if "idle_server_busy" in hb:
        busy = hb["idle_server_busy"] * 100
        lines.append(
            f"| CPU of the idle worker (heartbeat only) | – | {busy:.1f} % of a core, "
            f"{hb['idle_server_cpu_us_per_ping']:.0f} µs per ping and its pong |"
        )
    lines.append("")
    if not a.get("same_n", True):
        lines += [
            "tempest_ws did not hold all N through the run, so the two columns are not "
            "at the same N and no ratio is drawn from them.",
            "",
        ]
    elif "rss_per_conn_over_bare_kb" in a and "broadcast_p99_vs_bare" in a:
        lines += [
            f"At the same N, tempest_ws takes {a['rss_per_conn_over_bare_kb']:+.1f} KB per "
            f"connection over the bare loop, and its broadcast p99 is "
            f"{a['broadcast_p99_vs_bare']:.2f}× the bare loop's.",
            "",
        ]
    return lines


def _connect(run: dict[str, Any]) -> str:
    c = run.get("connect") or {}
    if "server_cpu_ms_per_handshake" not in c:
        return _num(c.get("seconds"), 0) + " s" if c else "–"
    text = f"{c['seconds']:.0f} s / {c['server_cpu_ms_per_handshake']:.2f} ms"
    if "loader_busy_max" in c:
        text += f" (load generators at most {c['loader_busy_max'] * 100:.0f} % busy)"
    return text


def _storm(b: dict[str, Any], s: dict[str, Any]) -> str:
    text = (
        f"**Reconnect storm**: every worker closed all its connections with 1012 "
        f"({_num(s.get('dropped_by_servers'))}); each client came back on the Python "
        "client's default reconnect policy (jittered backoff from 0.5 s up to 30 s, after "
        "1012 at least a random time in [0, 5 s]; after HTTP 503 the long backoff from 5 s "
        "up to 120 s, at least its `Retry-After`; open timeout 10 s). "
    )
    failed = s.get("failed_attempts") or {}
    if s.get("all_back"):
        text += (
            f"The workers held all {_num(s.get('dropped_by_servers'))} again after "
            f"**{_num(s.get('seconds_until_servers_hold_all'), 1)} s** (last client back at "
            f"{_num(s.get('seconds_until_last_client_back'), 1)} s); attempts per client "
            f"{s.get('attempts_histogram')}. "
        )
    if "handshakes_shed_by_servers" in s:
        rates = ", ".join(_num(x) for x in s.get("handshakes_per_s_per_worker", []))
        text += (
            f"Handshakes answered HTTP 503 (`Retry-After: 5`) because "
            "`WS_MAX_PENDING_HANDSHAKES` (512) were in progress: "
            f"{_num(s.get('handshakes_shed_by_servers'))} (the workers' count; "
            f"{_num(failed.get('http_503_retry_later', 0))} reached a waiting client); "
            f"attempts with no answer within the open timeout: "
            f"{_num(failed.get('tcp_or_timeout', 0))}. Fastest sustained intake per worker "
            f"(10 s windows): {rates} connections/s. "
        )
    if not s.get("all_back"):
        text += (
            f"**The workers did not hold all {_num(s.get('dropped_by_servers'))} again "
            f"within the {_num(s.get('limit_s'))} s limit**: "
            f"{_num(s.get('back'))} clients got their handshake answered (the last at "
            f"{_num(s.get('seconds_until_last_client_back'), 1)} s), and at the end the "
            f"workers had registered {_num(s.get('connections_at_end'))}"
        )
        sockets = s.get("server_sockets_at_end")
        if sockets and None not in sockets:
            text += f" and held {_num(sum(sockets))} TCP connections on their side"
        text += ". "
    refused = s.get("rejected_at_capacity_by_servers")
    text += (
        f"Refused at `WS_MAX_CONNECTIONS`: **{_num(refused)}** (the workers' count)"
        f", {_num(s.get('cap_refusals_seen_by_clients', s.get('cap_refusals')))} seen by "
        f"clients; gave up: {_num(s.get('gave_up'))}."
    )
    return text


def _every(run: dict[str, Any]) -> str:
    if not run:
        return "–"
    ok = run.get("delivered") == run.get("expected") and not run.get("order_errors")
    return "yes" if ok else f"no ({_num(run.get('delivered'))} of {_num(run.get('expected'))})"


def splice(page: str, text: str) -> str:
    """``page`` with its connection-counts section replaced by (or added as) ``text``."""
    start = page.find(HEADING)
    if start >= 0:
        end = page.find("\n## ", start)
        end = len(page) if end < 0 else end + 1
        return page[:start] + text + "\n" + page[end:]
    at = page.find(BEFORE)
    if at < 0:
        return page.rstrip("\n") + "\n\n" + text
    return page[:at] + text + "\n" + page[at:]


def table(result: dict[str, Any]) -> str:
    rows = ["part  what                                  value"]
    a = result.get("a")
    if a:
        for kind in ("bare", "tempest"):
            r = a.get(kind, {})
            lat = r.get("broadcast", {}).get("latency_ms", {})
            rows.append(
                f"A     {kind} connections (N={a['n']})".ljust(44) + f"{r.get('connections')}"
            )
            rows.append(
                f"A     {kind} RSS per connection KB".ljust(44)
                + f"{r.get('rss_per_conn_kb', 0):.2f}"
            )
            rows.append(
                f"A     {kind} broadcast p50/p99 ms".ljust(44)
                + f"{lat.get('p50', 0):.1f} / {lat.get('p99', 0):.1f}"
            )
        hb = a.get("tempest", {}).get("heartbeat", {})
        rows.append("A     tempest late pings".ljust(44) + f"{hb.get('late')} of {hb.get('pings')}")
        if not a.get("same_n", True):
            rows.append("A     vs bare".ljust(44) + "not compared: a server did not hold all N")
        else:
            rows.append(
                "A     RSS/conn over bare KB".ljust(44)
                + f"{a.get('rss_per_conn_over_bare_kb', 0):.2f}"
            )
            rows.append(
                "A     broadcast p99 vs bare".ljust(44)
                + f"{a.get('broadcast_p99_vs_bare', 0):.2f}x"
            )
    b = result.get("b")
    if b:
        rows.append(
            f"B     connections (N={b['n']}, {b['workers']} workers)".ljust(44)
            + f"{b.get('connections')}"
        )
        for key in ("broadcast", "topics_broadcast"):
            r = b.get(key, {})
            lat = r.get("latency_ms", {})
            rows.append(
                f"B     {key} p50/p99 ms".ljust(44)
                + f"{lat.get('p50', 0):.1f} / {lat.get('p99', 0):.1f}  "
                + f"({r.get('server_cpu_us_per_delivery', 0):.1f} us CPU/delivery)"
            )
        s = b.get("storm", {})
        rows.append(
            "B     storm: all back after s".ljust(44) + f"{s.get('seconds_until_servers_hold_all')}"
        )
        rows.append(
            "B     storm: clients back".ljust(44)
            + f"{s.get('back')} of {s.get('dropped_by_servers')}"
        )
        rows.append(
            "B     storm: refused at a cap (servers)".ljust(44)
            + f"{s.get('rejected_at_capacity_by_servers')}"
        )
        rows.append(
            "B     storm: 503 Retry-After (servers)".ljust(44)
            + f"{s.get('handshakes_shed_by_servers')}"
        )
    return "\n".join(rows)
