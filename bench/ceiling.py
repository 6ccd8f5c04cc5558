"""How close tempest_ws's broadcast is to the floor of its stack, and that floor to picows.

Run ``.venv/bin/python -m bench.ceiling [--ns 5000,10000] [--repeats 5]`` (about four
minutes per N). For each N, three servers are up at once, each with its own load
generator, and their bursts (one broadcast per event-loop tick, as in ``python -m bench``)
run in turn, ``--repeats`` times:

``tempest``  tempest_ws's router and hub under uvicorn, as in the main benchmark;
``floor``    the same server, whose broadcast writes the encoded frame to every
             registered connection's transport in a bare loop, with none of the checks a
             real broadcast makes (``bench.server``'s ``floor`` kind): the most a fan-out
             on uvicorn and uvloop can do with tempest_ws's registry;
``picows``   picows' own server (C, no ASGI), as in the main benchmark.

Prints, per N, each server's median throughput and server CPU (user and kernel) per
delivered message, and the ratios measured in this run: tempest over floor (what the
checks cost), floor over picows (what the stack allows), tempest over picows, and writes
them to ``bench/results/ceiling.json`` (``--out``), from which ``docs/performance.md``
shows them (`markdown_section`). Every phase is bounded by its round count and deadline;
the servers and load generators are stopped by their PIDs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ._proc import machine_note
from ._session import Session
from .run import timed_burst

KINDS = ("tempest", "floor", "picows")
RESULTS = Path(__file__).resolve().parent / "results" / "ceiling.json"


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r.get(key) or 0.0) for r in runs)


def measure(n: int, rounds: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Burst ``rounds`` messages to ``n`` clients on each server, ``repeats`` times in
    turn; each server's medians."""
    sessions: dict[str, Session] = {}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    try:
        for kind in KINDS:
            sessions[kind] = session = Session(kind)
            connected = session.connect(n)["connected"]
            if connected < n:
                raise RuntimeError(f"{kind}: only {connected} of {n} connected")
        time.sleep(0.5)
        for session in sessions.values():
            session.phase("burst", min(rounds, 20), latency=False)  # warm-up, not kept
        for _ in range(repeats):
            for kind, session in sessions.items():
                runs[kind].append(timed_burst(session, rounds))
    finally:
        for session in sessions.values():
            session.close()
    return {
        kind: {
            "msgs_per_s": _median(got, "msgs_per_s"),
            "user_us_per_msg": _median(got, "server_user_us_per_msg"),
            "kernel_us_per_msg": _median(got, "server_kernel_us_per_msg"),
            "p99_ms": statistics.median(
                float((r.get("latency_ms") or {}).get("p99") or 0.0) for r in got
            ),
            "all_msgs_per_s": [r.get("msgs_per_s") for r in got],
            "delivered": [r.get("delivered") for r in got],
            "order_errors": sum(int(r.get("order_errors") or 0) for r in got),
        }
        for kind, got in runs.items()
    }


def ratios(medians: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Throughput ratios between the servers of one N."""

    def over(a: str, b: str) -> float:
        return round(medians[a]["msgs_per_s"] / max(medians[b]["msgs_per_s"], 1.0), 3)

    return {
        "tempest_over_floor": over("tempest", "floor"),
        "floor_over_picows": over("floor", "picows"),
        "tempest_over_picows": over("tempest", "picows"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--ns", default="5000,10000", help="comma-separated client counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--deliveries", type=int, default=500_000, help="per burst")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    command = f"python -m bench.ceiling --ns {args.ns} --repeats {args.repeats}"
    results: dict[str, Any] = {
        "command": command,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "commit": machine_note()["commit"],
        },
        "repeats": args.repeats,
        "by_n": {},
    }
    for n in (int(x) for x in args.ns.split(",")):
        rounds = max(10, min(400, args.deliveries // n))
        medians = measure(n, rounds, args.repeats)
        results["by_n"][str(n)] = {"rounds": rounds, "servers": medians, "ratios": ratios(medians)}
        out = sys.stdout
        out.write(f"N={n}, {rounds} messages per burst, medians of {args.repeats}\n")
        for kind, m in medians.items():
            out.write(
                f"  {kind:8s} {m['msgs_per_s']:>10,.0f} msg/s  user {m['user_us_per_msg']:.2f}"
                f" µs  kernel {m['kernel_us_per_msg']:.2f} µs  p99 {m['p99_ms']:.1f} ms\n"
            )
        for name, value in results["by_n"][str(n)]["ratios"].items():
            out.write(f"  {name:20s} {value:.2f}\n")
        out.flush()
    results["machine"]["load_average"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


def markdown_section(r: dict[str, Any]) -> list[str]:
    """The "floor of the stack" section of ``docs/performance.md`` from a run's results."""
    machine = r["machine"]
    lines = [
        "",
        "## The floor of the stack",
        "",
        f"`{r['command']}` ({machine['cpus']} cores, Python {machine['python']}, load "
        f"average {machine['load_average'][0]:.1f} at the end"
        + (f", commit {machine['commit']}" if machine.get("commit") else "")
        + "), measured apart from the run "
        "above. Three servers burst one broadcast per event-loop tick, in turn, medians of "
        f"{r['repeats']}: tempest_ws at that commit; *floor*, the same uvicorn server, router and "
        "registry whose broadcast writes the encoded frame to every connection's transport "
        "in a bare loop, with none of the checks a real broadcast needs (a closing socket, "
        "flow control, order with other writes: unsafe, a yardstick only); and picows' own "
        "server.",
        "",
        "| N | server | msgs/s | CPU user / kernel µs per message | burst p99 ms |",
        "|---|---|---|---|---|",
    ]
    for n, at in r["by_n"].items():
        for kind in KINDS:
            m = at["servers"][kind]
            lines.append(
                f"| {int(n):,} | {kind} | {m['msgs_per_s']:,.0f} | "
                f"{m['user_us_per_msg']:.2f} / {m['kernel_us_per_msg']:.2f} | {m['p99_ms']:.1f} |"
            )
    lines += [
        "",
        "| N | tempest ÷ floor | floor ÷ picows | tempest ÷ picows |",
        "|---|---|---|---|",
    ]
    for n, at in r["by_n"].items():
        q = at["ratios"]
        lines.append(
            f"| {int(n):,} | {q['tempest_over_floor']:.2f} | {q['floor_over_picows']:.2f} | "
            f"{q['tempest_over_picows']:.2f} |"
        )
    lines += [
        "",
        "Kernel time per message is about the same for all three: every server makes one "
        "`send` or `write` per socket per broadcast, and on loopback that call also runs "
        "the receiving side's TCP. The difference is user time. A Python loop that only "
        "calls uvloop's `transport.write` for each registered connection already spends "
        "more of it than picows spends in all, so on uvicorn and uvloop a fan-out of one "
        "frame per socket per tick stays below picows' throughput even with no check at "
        "all; tempest_ws's checks cost the rest. Where a socket gets several frames in one "
        "tick, coalescing writes them with one call (the one-tick table above).",
    ]
    return lines


if __name__ == "__main__":
    main()
