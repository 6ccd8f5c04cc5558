"""``python -m bench [--quick | --full | --tiny] [--with-10k] [--with-history] [--with-scale]
[--out PATH] [--no-docs]``.

Runs every scenario (see `bench.run`), writes the JSON results (default
``bench/results/latest.json``) and renders ``docs/performance.md`` with its plot
``docs/img/performance.svg`` from them. ``--with-history`` adds the history comparison
(`bench.history`, in the same mode) to the same results. ``--with-scale`` also runs both
parts of `bench.scale` (one worker at its file limit, 50,000 connections on the machine)
with their defaults, after the rest, and keeps their result under ``"scale"`` in the
same JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import scale
from ._proc import ROOT, machine_note
from ._session import PLANS
from ._verdicts import finish
from .report import render
from .run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_const",
        dest="mode",
        const="quick",
        help="N in {100, 1000}; under 3 minutes (the default)",
    )
    mode.add_argument(
        "--full",
        action="store_const",
        dest="mode",
        const="full",
        help="adds N = 5,000 and longer phases",
    )
    mode.add_argument(
        "--tiny",
        action="store_const",
        dest="mode",
        const="tiny",
        help="N = 20, a few rounds: a smoke run of every scenario",
    )
    parser.add_argument(
        "--with-10k",
        action="store_true",
        help="also N = 10,000 (and the heartbeat check at 10,000)",
    )
    parser.add_argument(
        "--with-history",
        action="store_true",
        help="also what history costs a publish (bench.history), into the same results",
    )
    parser.add_argument(
        "--with-scale",
        action="store_true",
        help="also the connection counts of python -m bench.scale --all (about 20 minutes)",
    )
    parser.add_argument(
        "--scale-args",
        default="",
        metavar="ARGS",
        help="options for bench.scale under --with-scale, e.g. '--n-a 2000 --n-b 3000'",
    )
    parser.add_argument(
        "--ns",
        default=None,
        help="comma-separated N values (overrides the mode's); 'none' for no fan-out runs",
    )
    parser.add_argument(
        "--kinds", default="bare,native,picows,tempest", help="comma-separated server kinds to run"
    )
    parser.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="import tempest_ws from this checkout instead of this one",
    )
    parser.add_argument(
        "--ref-tree",
        type=Path,
        default=None,
        help="also run tempest_ws imported from this checkout, as 'tempest_ref'",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument(
        "--heartbeat",
        default=None,
        metavar="N,INTERVAL,SECONDS",
        help="the heartbeat check's connections, WS_HEARTBEAT_SECONDS and watch time",
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: recompute ratios and targets of a results file and render the docs",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not render docs/performance.md and its plot"
    )
    args = parser.parse_args(argv)
    plan = PLANS[args.mode or "quick"]
    plan.kinds = [k for k in args.kinds.split(",") if k]
    if args.ns:
        plan.ns = [] if args.ns == "none" else [int(n) for n in args.ns.split(",") if n]
        plan.redis_ns = [n for n in plan.redis_ns if n in plan.ns]
    if args.heartbeat:
        n, interval, idle = args.heartbeat.split(",")
        plan.heartbeat_n, plan.heartbeat_interval, plan.heartbeat_idle = (
            int(n),
            float(interval),
            float(idle),
        )
    trees: dict[str, str] = {}
    if args.tree is not None:
        trees["tempest"] = str(args.tree.resolve())
    if args.ref_tree is not None:
        trees["tempest_ref"] = str(args.ref_tree.resolve())
        if "tempest_ref" not in plan.kinds:
            plan.kinds.append("tempest_ref")
    if args.with_10k:
        plan.ns = [*plan.ns, 10_000]
        plan.heartbeat_n = 10_000

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.render is not None:
        result = json.loads(args.render.read_text())
        finish(result)
        args.render.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        for path in render(result, ROOT / "docs", extra_heartbeats(args.render)):
            log(f"bench: wrote {path}")
        return 0

    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if os.environ.get("BENCH_GC"):
        command = f"BENCH_GC={os.environ['BENCH_GC']} {command}"
    log(f"bench: {plan.mode} mode, N in {plan.ns}, servers {plan.kinds}")
    started = time.monotonic()
    machine = machine_note()
    result = run(plan, log, trees)
    if args.with_history:
        from .history import collect

        log("bench: history, without and with, in alternating pairs")
        result["history"] = collect(plan.mode, command.strip())
    if args.with_scale:
        log("bench: connection counts (python -m bench.scale --all)")
        result["scale"] = scale.measure(
            scale.options().parse_args(["--all", *shlex.split(args.scale_args)]),
            command.strip(),
            log,
        )
    result["command"] = command.strip()
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"] = machine
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    result["wall_seconds"] = time.monotonic() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    log(f"bench: wrote {args.out} in {result['wall_seconds']:.0f}s")
    if not args.no_docs:
        for path in render(result, ROOT / "docs", extra_heartbeats(args.out)):
            log(f"bench: wrote {path}")
    return 0


def extra_heartbeats(main: Path) -> list[dict[str, Any]]:
    """Heartbeat-only runs saved beside the main results (``heartbeat-*.json``)."""
    extras = []
    for path in sorted(main.parent.glob("heartbeat-*.json")):
        data = json.loads(path.read_text())
        if data.get("heartbeat") and "error" not in data["heartbeat"]:
            extras.append(
                {"file": path.name, "command": data.get("command", ""), **data["heartbeat"]}
            )
    return extras


if __name__ == "__main__":
    sys.exit(main())
