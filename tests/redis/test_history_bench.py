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

from tests.helpers.support import require_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.redis
def test_tiny_history_bench_writes_its_results(tmp_path: Path) -> None:
    require_tool("redis-server")
    out = tmp_path / "history.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.history", "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["plan"]["mode"] == "tiny"
    for case in ("memory", "redis_sequential", "redis_concurrent"):
        assert set(results[case]["publishes_per_s"]) == {"without", "with"}
        assert results[case]["measured_ratio"] > 0
        for run in results[case]["runs"]["with"]:
            assert run["messages"] > 0
    assert results["micro"]["redis_bytes_per_retained_message"] > 0
    assert "ratio" in done.stdout
