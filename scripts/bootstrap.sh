#!/usr/bin/env bash
# Prepare a fresh machine: system tools (when root), a virtualenv and the Python deps, and
# the browser client's type checker (node_modules, from package-lock.json).
# Idempotent and quick when everything is already there. Sourced by test.sh and demo.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

want_system_tools="${1:-yes}"
if [ "$want_system_tools" = yes ]; then
  missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: installing ${missing[*]} from Debian" >&2
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "bootstrap: ${missing[*]} missing and not root; Redis/browser/JS tests will fail" >&2
    fi
  fi
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: installing python3-venv from Debian" >&2
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    else
      echo "bootstrap: Python's venv module is missing: apt-get install python3-venv" >&2
      exit 1
    fi
  fi
  "$python" -m venv .venv
fi
# The development dependencies come from the lock (every version pinned, every file
# hash-checked); the package itself is installed editable on top, without resolving
# anything more. Done again whenever the lock or pyproject.toml changes.
lock=requirements/dev.lock
stamp=.venv/.tempest-ws-deps
want="$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing $lock into .venv" >&2
  .venv/bin/python -m pip install -q --require-hashes -r "$lock"
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" >"$stamp"
fi

# TypeScript, for type-checking the browser client (scripts/test.sh), comes from npm: the
# version pinned in package-lock.json (with its integrity hash), installed by `npm ci`
# into node_modules/. Done again whenever the lock changes. Nothing else uses npm.
js_lock=package-lock.json
js_stamp=node_modules/.tempest-ws-deps
js_want="$(sha256sum "$js_lock" | cut -d' ' -f1)"
if [ "$(cat "$js_stamp" 2>/dev/null)" != "$js_want" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "bootstrap: installing $js_lock into node_modules" >&2
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
    echo "$js_want" >"$js_stamp"
  else
    echo "bootstrap: npm missing: apt-get install npm (the JS type check will fail)" >&2
  fi
fi
