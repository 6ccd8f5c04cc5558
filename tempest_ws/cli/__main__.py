"""``python -m tempest_ws.cli``: the ``tempest-ws`` command, for where scripts are not on PATH."""

from __future__ import annotations

from tempest_ws.cli import entry_point

entry_point()
