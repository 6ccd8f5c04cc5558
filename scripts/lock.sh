#!/usr/bin/env bash
# Refresh requirements/dev.lock: every transitive dependency of '.[dev]' for Python 3.11,
# pinned with hashes and resolved from PyPI by uv (installed into .venv from the lock).
# Usage: scripts/lock.sh                        move every pin to its newest release
#        scripts/lock.sh --upgrade-package X    move only X (other pins stay as they are)
#        scripts/lock.sh --no-upgrade           re-resolve after editing pyproject.toml,
#                                               keeping every pin that still fits
set -euo pipefail
cd "$(dirname "$0")/.."
lock=requirements/dev.lock
# uv itself comes from the lock: the bootstrap installs it. Once installed, it is used as
# it is, so a pyproject.toml edit the bootstrap cannot install yet can still be locked.
[ -x .venv/bin/uv ] || scripts/bootstrap.sh no
uv=.venv/bin/uv
if [ "$#" -eq 0 ]; then
  set -- --upgrade
elif [ "$1" = --no-upgrade ]; then
  shift
fi
# --no-config and an explicit index: this machine's pip or uv settings never leak into
# the lock, so a clean machine with only PyPI can install it.
"$uv" pip compile pyproject.toml --extra dev \
  --python-version 3.11 --universal --generate-hashes \
  --no-config --index-url https://pypi.org/simple \
  --custom-compile-command "scripts/lock.sh" \
  --quiet --output-file "$lock" "$@"
echo "lock.sh: wrote $lock; scripts/bootstrap.sh installs it on its next run" >&2
