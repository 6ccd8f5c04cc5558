"""tempest_ws benchmark suite: fan-out throughput, latency, CPU and memory on loopback.

Run ``python -m bench --quick`` (or ``make bench``); see ``docs/performance.md``. Every
server and load generator runs in its own process, started and stopped by PID; every
load loop is bounded by a count and a deadline.
"""

import os as _os
import sys as _sys

# ``TEMPEST_BENCH_TREE=/path/to/checkout`` makes a benchmark server import tempest_ws from
# that source tree instead of this one: the driver uses it to compare two versions of
# the package in the same run (``--ref-tree``).
if _tree := _os.environ.get("TEMPEST_BENCH_TREE"):
    _sys.path.insert(0, _tree)
