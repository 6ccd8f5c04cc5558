"""Backplanes: how the hubs of several processes reach each other's connections.

``InMemoryBackplane`` (the default) serves one process; ``RedisBackplane`` spans processes
and machines through Redis pub/sub (sharded pub/sub on Redis Cluster). ``RedisBackplane``
is imported on first use, so ``import tempest_ws`` never imports redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tempest_ws.backplane.base import Backplane, BackplaneListener, Member, Presence
from tempest_ws.backplane.memory import InMemoryBackplane, InMemoryBus

if TYPE_CHECKING:
    from tempest_ws.backplane.redis import RedisBackplane

__all__ = [
    "Backplane",
    "BackplaneListener",
    "InMemoryBackplane",
    "InMemoryBus",
    "Member",
    "Presence",
    "RedisBackplane",
]


def __getattr__(name: str) -> Any:
    if name == "RedisBackplane":
        from tempest_ws.backplane.redis import RedisBackplane

        return RedisBackplane
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
