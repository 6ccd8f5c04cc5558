#!/usr/bin/env bash
# The library across its declared dependency range, outside CI: one virtualenv with every
# runtime dependency and extra at the floor pyproject.toml declares (fastapi 0.115,
# pydantic 2.7, redis 5.0, ...; everything else the newest that fits), one with the newest
# releases of everything. Each runs mypy --strict and the tests (the development lock is
# not used here: its pins are what scripts/test.sh checks).
# Usage: scripts/compat.sh [floors|newest]... [-- pytest args]
#   default pytest args: -m "not browser" -q -p no:cacheprovider
#   Redis tests run when redis-server is on PATH (they fail, not skip, without it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh no   # uv comes from the lock
uv=.venv/bin/uv
dir=.compat
kinds=()
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do kinds+=("$1"); shift; done
[ "$#" -gt 0 ] && shift
[ "${#kinds[@]}" -gt 0 ] || kinds=(floors newest)
[ "$#" -gt 0 ] || set -- -m "not browser" -q -p no:cacheprovider
mkdir -p "$dir"

# Every ">=X" of the runtime dependencies and of every extra but dev, pinned "==X".
.venv/bin/python - >"$dir/floors.txt" <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requirements = list(project["dependencies"])
for extra, items in project["optional-dependencies"].items():
    if extra != "dev":
        requirements += items
floors = {}
for requirement in requirements:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9][^,;\s]*)", requirement)
    if match is None:
        raise SystemExit(f"compat.sh: no plain '>=' floor in {requirement!r}")
    name = match[1].lower()
    # A package several extras name (websockets) gets the highest of their floors.
    if name not in floors or tuple(map(int, match[2].split("."))) > tuple(map(int, floors[name].split("."))):
        floors[name] = match[2]
for name, version in sorted(floors.items()):
    print(f"{name}=={version}")
PY

summary=()
for kind in "${kinds[@]}"; do
  venv="$dir/$kind"
  rm -rf "$venv"
  "$uv" venv --quiet --python .venv/bin/python "$venv"
  case "$kind" in
    # The suite turns warnings into errors; at the floors, one deprecation between two
    # third-party releases is let through: Starlette before 1.0 reaches
    # anyio.abc.BlockingPortal, an alias anyio 4.15 deprecates.
    floors) constraints=(-c "$dir/floors.txt")
            extra=(-W "ignore:The anyio.abc.BlockingPortal alias is deprecated:DeprecationWarning") ;;
    newest) constraints=(); extra=() ;;
    *) echo "compat.sh: unknown kind $kind (floors or newest)" >&2; exit 2 ;;
  esac
  echo "compat.sh: $kind: installing" >&2
  "$uv" pip install --quiet --no-config --index-url https://pypi.org/simple \
    --python "$venv/bin/python" "${constraints[@]}" -e '.[dev]'
  "$uv" pip freeze --python "$venv/bin/python" >"$dir/$kind.freeze.txt"
  versions="$(grep -iE '^(fastapi|starlette|pydantic|pydantic-settings|pyjwt|uvicorn|websockets|redis)==' "$dir/$kind.freeze.txt" | tr '\n' ' ')"
  echo "compat.sh: $kind: $versions" >&2
  start=$SECONDS
  status=pass
  "$venv/bin/mypy" --cache-dir "$dir/$kind.mypy_cache" tempest_ws || status=fail
  TEMPEST_WS_REQUIRE_TOOLS=1 "$venv/bin/python" -m pytest "${extra[@]}" "$@" || status=fail
  summary+=("$kind: $status in $((SECONDS - start)) s; $versions")
done
printf 'compat.sh: %s\n' "${summary[@]}" >&2
for line in "${summary[@]}"; do [[ "$line" == *": pass in "* ]] || exit 1; done
