"""``python -m bench.history --tiny`` runs end to end and writes its JSON.

Only the shape of the results is checked, never a timing: the figures depend on the
machine and on whatever else runs on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.bench_cli import run_bench
from tests.helpers.support import require_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.redis
def test_tiny_history_bench_writes_its_results(tmp_path: Path) -> None:
    require_tool("redis-server")
    out = tmp_path / "history.json"
    done = run_bench("bench.history", "--tiny", "--out", str(out), timeout=50)
    results = json.loads(out.read_text())
    assert results["plan"]["mode"] == "tiny"
    for case in ("memory", "redis_sequential", "redis_concurrent"):
        assert set(results[case]["publishes_per_s"]) == {"without", "with"}
        assert results[case]["measured_ratio"] > 0
        for run in results[case]["runs"]["with"]:
            assert run["messages"] > 0
    assert results["micro"]["redis_bytes_per_retained_message"] > 0
    assert "ratio" in done.stdout


@pytest.mark.redis
def test_main_bench_with_history_keeps_it_in_its_results_and_page(tmp_path: Path) -> None:
    """``python -m bench --with-history`` stores the comparison in its own results, and
    the performance page renders that run's history section, not an older file's."""
    require_tool("redis-server")
    from bench.report import render

    out = tmp_path / "latest.json"
    command = ["-m", "bench", "--tiny", "--ns", "none", "--kinds", "tempest", "--with-history"]
    done = subprocess.run(
        [sys.executable, *command, "--no-docs", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    history = result["history"]
    assert history["plan"]["mode"] == "tiny"
    assert history["machine"]["command"].startswith("python -m bench --tiny")
    for case in ("memory", "redis_sequential", "redis_concurrent"):
        assert len(history[case]["pair_ratios"]) == history[case]["pairs"]
        spread = history[case]["ratio_spread"]
        assert spread["min"] <= spread["median"] <= spread["max"]
    page, _ = render(result, tmp_path)
    text = page.read_text()
    assert "## What history costs a publish" in text
    assert history["machine"]["command"] in text
