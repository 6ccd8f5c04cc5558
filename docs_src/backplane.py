"""docs/backplane.md: choosing a backplane.

Building a ``RedisBackplane`` does not connect; the hub connects when it starts.
"""

from __future__ import annotations

# --8<-- [start:choose]
from tempest_ws import InMemoryBackplane, RedisBackplane, WebSocketHub
from tempest_ws.backplane import InMemoryBus

hub = WebSocketHub(backplane=RedisBackplane("redis://127.0.0.1:6379/0"))

bus = InMemoryBus()                       # two "processes" in one test
a = WebSocketHub(backplane=InMemoryBackplane(bus))
b = WebSocketHub(backplane=InMemoryBackplane(bus))
# --8<-- [end:choose]
