#!/usr/bin/env bash
# The whole test suite: lint, format, types (Python and the browser client's JS), docs,
# then every test (Redis and Chromium included). Installs what it needs first. Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh yes
export TEMPEST_WS_REQUIRE_TOOLS=1   # tests needing redis-server/chromium fail, never skip
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy tempest_ws
# The browser client: its modules and the one file built from them, type-checked (strict)
# against tempest-ws.d.ts; and that one file equal to a fresh build of the modules.
node_modules/.bin/tsc -p tsconfig.json
.venv/bin/python scripts/build_client.py --check
# Not --quiet: it hides the warnings that --strict turns into a failure.
docs_log="$(mktemp)"
if ! NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$(mktemp -d)" >"$docs_log" 2>&1; then
  grep -v '^INFO' "$docs_log" >&2
  exit 1
fi
# Two pytest-xdist workers, one test file per worker at a time (--dist loadfile), so a
# module's fixtures (Redis clusters, node processes) start once. Later arguments win:
# scripts/test.sh -n 0 runs in one process (for --pdb); TEMPEST_WS_WORKERS sets the count.
exec .venv/bin/python -m pytest -n "${TEMPEST_WS_WORKERS:-2}" --dist loadfile "$@"
