"""What the server's WebSocket options looked like, counted per hub.

The router inspects every connection's server protocol before accepting it
(``router/_server_guard.py``) and counts what it saw here; the hub keeps one
`ServerOptionCounts` (``hub.server_guard``) so the counts cover every router on it, and
the metrics read its `ServerOptionCounts.stats()`. Plain counters: no I/O, nothing of
HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerGuardStats", "ServerOptionCounts"]


@dataclass(frozen=True, slots=True)
class ServerGuardStats:
    """What the server's WebSocket options looked like to this hub (this process only).

    ``unsafe_connections`` counts connections accepted while the server offered
    permessage-deflate to a client that asked for it, or allowed messages larger than
    ``WS_MAX_MESSAGE_BYTES``; ``compression_declined`` and ``size_limit_lowered`` count
    the connections tempest_ws fixed itself; ``fragment_limit_closes`` the connections
    closed 1009 for splitting a message into too many fragments. ``protocol`` is the
    last uvicorn WebSocket protocol seen (``""`` before the first connection).
    """

    protocol: str
    unsafe_connections: int
    compression_declined: int
    size_limit_lowered: int
    fragment_limit_closes: int


class ServerOptionCounts:
    """The running counts behind `ServerGuardStats`; the router's guard adds to them."""

    __slots__ = ("declined", "fragment_closes", "lowered", "protocol", "reported", "unsafe")

    def __init__(self) -> None:
        self.protocol = ""
        """The last uvicorn WebSocket protocol seen."""
        self.unsafe = 0
        self.declined = 0
        self.lowered = 0
        self.fragment_closes = 0
        self.reported = False
        """Whether the one ERROR for unsafe options was logged."""

    def stats(self) -> ServerGuardStats:
        """A snapshot of the counts (plain data; no I/O)."""
        return ServerGuardStats(
            self.protocol, self.unsafe, self.declined, self.lowered, self.fragment_closes
        )
