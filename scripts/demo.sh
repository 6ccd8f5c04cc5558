#!/usr/bin/env bash
# Run the chat demo on http://127.0.0.1:8000 with the embedded in-memory hub.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh no
exec .venv/bin/python -m examples.chat "$@"
