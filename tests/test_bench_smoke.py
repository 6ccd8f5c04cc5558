"""The benchmark suite runs end to end in its tiny mode and writes its JSON.

Only the shape of the results is checked, never a timing: the figures depend on the
machine and on whatever else runs on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("bare", "native", "picows", "tempest")


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_tiny_bench_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out", str(out), "--no-docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("command", "machine", "plan", "runs", "ratios", "targets", "heartbeat"):
        assert key in result, key
    assert result["command"].startswith("python -m bench --tiny")
    for kind in KINDS:
        run = result["runs"][kind]["20"]
        assert "error" not in run, run.get("error")
        keys = ("burst", "tight", "paced", "per_user", "stall", "rss_per_conn_kb", "idle_cpu_pct")
        for key in keys:
            assert key in run, (kind, key)
        assert run["burst"]["delivered"] == run["burst"]["rounds"] * 20
        assert run["burst"]["order_errors"] == 0
        assert run["tight"]["delivered"] == run["tight"]["rounds"] * 20
        assert run["tight"]["order_errors"] == 0
        assert "latency_ms" in run["paced"]
        assert "server_cpu_us_per_msg" in run["burst"]
    tempest = result["runs"]["tempest"]["20"]
    assert tempest["stall"]["others_saw_every_round"]
    assert tempest["stall"]["server_view"]["closed_code"] == 1013
    assert tempest["stall"]["server_view"]["connection_object_freed"]
    assert result["runs"]["bare"]["20"]["stall"]["paced"]["stuck"]
    assert set(result["ratios"]["20"]) >= {"vs_bare", "vs_native", "vs_picows"}
    # Whether every ping came on time is a timing figure the bench reports, not a test
    # verdict (a loaded CI machine is late sometimes); the test checks the check ran.
    heartbeat = result["heartbeat"]
    assert heartbeat["pings"] > 0
    assert heartbeat["late"] >= 0
    assert heartbeat["connections_after"] == heartbeat["n"]


def test_report_renders_markdown_and_svg(tmp_path: Path) -> None:
    from bench.report import render

    result = {
        "command": "python -m bench --tiny",
        "runs": {
            kind: {"20": {"burst": {"msgs_per_s": 1000.0}, "paced": {"latency_ms": {"p99": 1.0}}}}
            for kind in KINDS
        },
        "ratios": {},
        "targets": [{"target": "x", "value": 1.0, "met": True}],
    }
    page, image = render(result, tmp_path)
    assert "python -m bench --tiny" in page.read_text()
    assert image.read_text().startswith("<svg")
