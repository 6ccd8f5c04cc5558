"""Liveness: when to send a ping envelope and when a silent peer is dead.

:class:`Liveness` is pure state driven by an injected clock, tested without sleeping.
:class:`HeartbeatTimer` drives it with one ``loop.call_at`` handle per connection (no
sleeping task per socket): it fires at the next ping or at the exact moment the silence
deadline passes, so a dead peer is closed on time rather than up to an interval late.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HeartbeatAction", "HeartbeatTimer", "Liveness"]


class HeartbeatAction(enum.Enum):
    """What :meth:`Liveness.check` asks the caller to do now."""

    NOTHING = "nothing"
    PING = "ping"
    TIMEOUT = "timeout"


@dataclass(slots=True)
class Liveness:
    """Ping cadence and silence deadline of one connection.

    ``last_seen`` moves with every inbound frame (:meth:`touch`); ``last_ping`` with every
    ping sent. The peer is dead once ``now - last_seen >= timeout``.
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

    def next_deadline(self) -> float:
        """The clock value at which :meth:`check` may next return something to do."""
        return min(self.last_ping + self.interval, self.last_seen + self.timeout)


class HeartbeatTimer:
    """Drives a :class:`Liveness` on the running loop's clock.

    ``on_ping`` and ``on_timeout`` are plain callables run from a timer callback: they
    must not block (the connection's ``enqueue`` and ``close_soon`` fit). ``is_busy`` lets
    the owner report unread inbound frames as proof of life while its handler is slow.
    """

    def __init__(
        self,
        *,
        interval: float,
        timeout: float,
        on_ping: Callable[[], None],
        on_timeout: Callable[[], None],
        is_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.liveness = Liveness.starting_at(self._loop.time(), interval=interval, timeout=timeout)
        self._on_ping = on_ping
        self._on_timeout = on_timeout
        self._is_busy = is_busy
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Schedule the first check; calling it twice is harmless."""
        if self._handle is None:
            self._schedule()

    def stop(self) -> None:
        """Cancel the pending check; the timer never fires again."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def touch(self) -> None:
        """Record an inbound frame now (no rescheduling: the timer re-reads the state)."""
        self.liveness.last_seen = self._loop.time()

    def _schedule(self) -> None:
        self._handle = self._loop.call_at(self.liveness.next_deadline(), self._fire)

    def _fire(self) -> None:
        now = self._loop.time()
        if self._is_busy():
            self.liveness.touch(now)
        action = self.liveness.check(now)
        if action is HeartbeatAction.TIMEOUT:
            self._handle = None
            self._on_timeout()
            return
        if action is HeartbeatAction.PING:
            self.liveness.last_ping = now
            self._on_ping()
        self._schedule()
