"""Liveness of one connection: when a ping is due and when a silent peer is dead.

Both ends of a connection keep the same timing: the server pings its clients and closes
one 4408 after a silence (``router/_heartbeat.py``), and the Python client watches the
server the same way (``client/_session.py``). `Liveness` is that timing as pure state
driven by an injected clock (no sleeping, no I/O), tested without sockets;
`HeartbeatAction` is what it asks its caller to do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["HeartbeatAction", "Liveness"]


class HeartbeatAction(enum.Enum):
    """What `Liveness.check()` asks the caller to do now."""

    NOTHING = "nothing"
    PING = "ping"
    TIMEOUT = "timeout"


@dataclass(slots=True)
class Liveness:
    """Ping cadence and silence deadline of one connection.

    ``last_seen`` moves with every inbound frame (`touch()`); ``last_ping`` with every
    ping sent (`pinged()`). The peer is dead once ``now - last_seen >= timeout``.
    """

    interval: float
    timeout: float
    last_seen: float
    last_ping: float

    @classmethod
    def starting_at(cls, now: float, *, interval: float, timeout: float) -> Liveness:
        """A fresh state: the handshake counts as the first sign of life."""
        return cls(interval=interval, timeout=timeout, last_seen=now, last_ping=now)

    def touch(self, now: float) -> None:
        """Record an inbound frame at ``now``."""
        self.last_seen = now

    def check(self, now: float) -> HeartbeatAction:
        """Return what is due at ``now``: a timeout wins over a ping."""
        if now - self.last_seen >= self.timeout:
            return HeartbeatAction.TIMEOUT
        if now - self.last_ping >= self.interval:
            return HeartbeatAction.PING
        return HeartbeatAction.NOTHING

    def pinged(self, now: float) -> None:
        """Record the ping that `check()` asked for, sent at ``now``.

        The ping is booked at the moment it was due, so one sent late does not delay the
        next; one more than a whole interval late restarts the cadence at ``now`` instead
        of sending a burst of catch-up pings.
        """
        due = self.last_ping + self.interval
        self.last_ping = due if now - due < self.interval else now

    def next_deadline(self) -> float:
        """The clock value at which `check()` may next return something to do."""
        return min(self.last_ping + self.interval, self.last_seen + self.timeout)
