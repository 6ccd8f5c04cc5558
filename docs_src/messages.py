"""docs/messages.md: the import line."""

from __future__ import annotations

# --8<-- [start:import]
from tempest_ws.messages import MessageRegistry

# --8<-- [end:import]

__all__ = ["MessageRegistry"]
