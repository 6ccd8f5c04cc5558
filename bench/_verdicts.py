"""Verdicts from the raw figures: ratios between servers of one run, and the targets.

Ratios are computed only between figures measured in the same run; `finish()` adds the
ratios and the target verdicts to a results dict in place (``python -m bench --render``
recomputes them from a saved file).
"""

from __future__ import annotations

from typing import Any

RSS_MIN_N = 1000  # the RSS target is judged from this N up (resolution, see targets())
PICOWS_MIN_N = 5000  # the targets against picows are set from this N up


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
                    get(mine, "burst.msgs_per_s"), get(other, "burst.msgs_per_s")
                ),
                "paced_p99": ratio(
                    get(mine, "paced.latency_ms.p99"), get(other, "paced.latency_ms.p99")
                ),
                "burst_p99": ratio(
                    get(mine, "burst.latency_ms.p99"), get(other, "burst.latency_ms.p99")
                ),
                "cpu_per_msg": ratio(
                    get(mine, "burst.server_cpu_us_per_msg"),
                    get(other, "burst.server_cpu_us_per_msg"),
                ),
                "tight_throughput": ratio(
                    get(mine, "tight.msgs_per_s"), get(other, "tight.msgs_per_s")
                ),
                "tight_cpu_per_msg": ratio(
                    get(mine, "tight.server_cpu_us_per_msg"),
                    get(other, "tight.server_cpu_us_per_msg"),
                ),
                "rss_per_conn_delta_kb": _diff(
                    get(mine, "rss_per_conn_kb"), get(other, "rss_per_conn_kb")
                ),
                "per_user_throughput": ratio(
                    get(mine, "per_user.msgs_per_s"), get(other, "per_user.msgs_per_s")
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
        get(run, "stall.paced.latency_ms.p99"), get(run, "stall.paced_without.latency_ms.p99")
    )


def get(d: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested dicts; ``None`` where a step is missing."""
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
        picows = r.get("vs_picows", {})
        v = picows.get("burst_throughput")
        if v is not None and int(key) >= PICOWS_MIN_N:
            add(f"N={key}: burst >= 1.0x picows", v, v >= 1.0)
        v = picows.get("burst_p99")
        if v is not None and int(key) >= PICOWS_MIN_N:
            add(f"N={key}: burst p99 <= picows", v, v <= 1.0)
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


def finish(result: dict[str, Any]) -> None:
    """Compute the ratios and the target verdicts from the raw figures (in place)."""
    runs = result["runs"]
    result["ratios"] = ratios(runs)
    for key, redis in result.get("redis_two_workers", {}).items():
        local = runs.get("tempest", {}).get(key, {})
        if key in result["ratios"]:
            result["ratios"][key]["redis_two_workers_vs_in_process"] = {
                "burst_throughput": ratio(
                    get(redis, "burst.msgs_per_s"), get(local, "burst.msgs_per_s")
                ),
                "paced_p99": ratio(
                    get(redis, "paced.latency_ms.p99"), get(local, "paced.latency_ms.p99")
                ),
                "cpu_per_msg": ratio(
                    get(redis, "burst.server_cpu_us_per_msg"),
                    get(local, "burst.server_cpu_us_per_msg"),
                ),
            }
    result["targets"] = targets(result)
