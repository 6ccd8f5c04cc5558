"""The benchmark suite runs end to end in its tiny mode and writes its JSON.

Only the shape of the results is checked, never a timing: the figures depend on the
machine and on whatever else runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.bench_cli import run_bench

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("bare", "native", "picows", "tempest")


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_tiny_bench_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    run_bench("bench", "--tiny", "--out", str(out), "--no-docs", timeout=150)
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


def test_report_renders_the_connection_counts_measured_in_the_run(tmp_path: Path) -> None:
    """``python -m bench --with-scale`` keeps the ``bench.scale`` result under ``"scale"``;
    the page shows that one, not a separate ``scale.json``."""
    from bench.report import render

    side = {"connections": 19_000, "rss_per_conn_kb": 30.0, "connect": {"seconds": 40.0}}
    result = {
        "command": "python -m bench --tiny --with-scale",
        "runs": {kind: {} for kind in KINDS},
        "ratios": {},
        "targets": [],
        "scale": {
            "command": "python -m bench --tiny --with-scale",
            "a": {
                "n": 19_000,
                "same_n": True,
                "bare": side,
                "tempest": {**side, "heartbeat": {"interval_s": 30.0, "pings": 57_000, "late": 0}},
                "rss_per_conn_over_bare_kb": 1.5,
                "broadcast_p99_vs_bare": 1.1,
            },
        },
    }
    text = render(result, tmp_path)[0].read_text()
    section = text[text.index("## Connection counts") :]
    assert "`python -m bench --tiny --with-scale`" in section
    assert "`WS_HEARTBEAT_SECONDS=30.0`" in section
    assert "+1.5 KB per connection over the bare loop" in section


def test_scale_run_of_one_part_keeps_the_other_as_measured() -> None:
    """``python -m bench.scale --part a`` keeps part B of the earlier results file, and
    the page names the run that measured each part."""
    from bench._scale_docs import section
    from bench.scale import carry_over

    earlier = {
        "command": "python -m bench.scale --all",
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {"loadavg_start": 1.0, "loadavg_end": 2.0},
        "a": {"n": 1},
        "b": {"n": 50_000, "error": "stopped"},
    }
    result = {
        "command": "python -m bench.scale --part a",
        "date": "2026-01-02T00:00:00+00:00",
        "machine": {},
        "a": {
            "n": 19_000,
            "run": {
                "command": "python -m bench.scale --part a",
                "date": "2026-01-02T00:00:00+00:00",
                "loadavg_start": 1.0,
                "loadavg_end": 1.0,
            },
        },
    }
    carry_over(result, earlier)
    assert result["a"]["n"] == 19_000
    assert result["b"]["run"]["command"] == "python -m bench.scale --all"
    text = section(result)
    assert "`python -m bench.scale --part a` (2026-01-02" in text
    assert "`python -m bench.scale --all` (2026-01-01" in text


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_scale_bench_runs_both_parts_at_tiny_n(tmp_path: Path) -> None:
    """``python -m bench.scale`` at 200 connections over 2 load generators: every client
    connects, every broadcast reaches every client in order, the heartbeat check ran,
    and after the reconnect storm the workers hold every connection again."""
    out = tmp_path / "scale.json"
    done = run_bench(
        "bench.scale",
        *("--part", "all", "--n-a", "200", "--n-b", "210", "--loaders-a", "2"),
        *("--loaders-b", "2", "--rounds", "3", "--idle", "2.5", "--heartbeat", "2"),
        *("--storm-limit", "90", "--limit", "200", "--out", str(out)),
        timeout=220,
    )
    result = json.loads(out.read_text())
    assert "RSS per connection" in done.stdout
    part_a = result["a"]
    for kind in ("bare", "tempest"):
        run = part_a[kind]
        assert "error" not in run, run.get("error")
        assert run["connections"] == 200
        assert run["connect"]["per_loader"] == [100, 100]
        assert run["broadcast"]["delivered"] == run["broadcast"]["expected"] == 3 * 200
        assert run["broadcast"]["order_errors"] == 0
        assert run["broadcast"]["latency_ms"]["samples"] == 600
        assert run["rss_per_conn_kb"] > 0
    heartbeat = part_a["tempest"]["heartbeat"]
    assert heartbeat["pings"] > 0
    assert heartbeat["late"] >= 0  # on time or not is a figure, not a verdict
    part_b = result["b"]
    assert "error" not in part_b, part_b.get("error")
    assert part_b["per_worker"] == [70, 70, 70]
    for key in ("broadcast", "topics_broadcast"):
        assert part_b[key]["delivered"] == part_b[key]["expected"] == 3 * 210, key
        assert part_b[key]["order_errors"] == 0
        assert part_b[key]["server_cpu_us_per_delivery"] >= 0  # /proc ticks: may read 0
    storm = part_b["storm"]
    assert storm["dropped_by_servers"] == 210
    assert storm["dropped_seen_by_clients"] == 210
    assert storm["all_back"]
    assert storm["back"] == 210
    assert storm["connections_at_end"] == 210
    assert storm["gave_up"] == 0
    assert storm["cap_refusals_seen_by_clients"] == 0
    assert storm["rejected_at_capacity_by_servers"] == 0


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_ceiling_bench_runs_its_three_servers(tmp_path: Path) -> None:
    """``python -m bench.ceiling`` bursts to tempest_ws, the check-free ``floor`` server and
    picows; every one delivers every frame in order, and the ratios are written."""
    out = tmp_path / "ceiling.json"
    args = ["--ns", "20", "--repeats", "1", "--deliveries", "400", "--out", str(out)]
    done = run_bench("bench.ceiling", *args, timeout=150)
    result = json.loads(out.read_text())["by_n"]["20"]
    assert result["rounds"] == 20
    for kind in ("tempest", "floor", "picows"):
        server = result["servers"][kind]
        assert server["delivered"] == [20 * 20], kind
        assert server["order_errors"] == 0, kind
        assert server["msgs_per_s"] > 0, kind
    assert set(result["ratios"]) == {
        "tempest_over_floor",
        "floor_over_picows",
        "tempest_over_picows",
    }
    assert "tempest_over_picows" in done.stdout
