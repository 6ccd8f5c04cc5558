#!/usr/bin/env bash
# Run the test command N times in a row while two CPU burners keep both cores busy.
# Usage: scripts/test-under-load.sh [N=3] [arguments for scripts/test.sh, i.e. pytest...]
# Each burner is bounded (timeout, 3 h) and killed by its PID on exit. Prints one line
# per run (exit code and seconds) and exits non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shift || true
burners=()
cleanup() {
    for pid in "${burners[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM
for _ in 1 2; do
    timeout 10800 python3 -c 'while True: pass' &
    burners+=("$!")
done
echo "CPU burners started: PIDs ${burners[*]}"
failed=0
results=()
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    scripts/test.sh "$@"
    code=$?
    results+=("run $i/$runs: exit $code in $(( $(date +%s) - start ))s")
    echo "${results[-1]}"
    [ "$code" -eq 0 ] || failed=1
done
printf '%s\n' "${results[@]}"
exit "$failed"
