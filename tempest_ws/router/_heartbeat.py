"""The server's heartbeat: one timer that pings and times out every connection.

The timing of one connection is `Liveness` (`tempest_ws.wire._liveness`, shared with
the Python client). `HeartbeatWheel` drives the liveness of every connection of one
router on one timer: a connection's next check (its next ping, or the moment its silence deadline
passes) falls in a bucket of ``tick`` seconds, and one ``call_at`` handle fires for the
earliest bucket. Adding, touching and stopping a connection are O(1); there is no task
and no timer handle per socket, and the pings of one tick go out in one batch.

Pings keep a fixed cadence: a ping that went out late (a busy loop, the end of its
bucket) does not push the next one back, so the gap a client sees stays ``interval``
give or take one tick. A timeout fires at most one tick after the deadline.

Silence is the peer's, not the server's: when a bucket runs more than a tick late (the
event loop was held by a long garbage collection or a blocking call), frames that came
meanwhile are not read yet, so that delay does not count toward the timeout of the
bucket's connections. After such a stall a live peer gets its ping and answers it
instead of being closed 4408; a dead one is closed that much later.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from tempest_ws.wire._liveness import HeartbeatAction, Liveness

__all__ = ["Beat", "HeartbeatAction", "HeartbeatWheel", "Liveness"]

logger = logging.getLogger("tempest_ws.heartbeat")

MAX_TICK = 0.05
"""The widest bucket, in seconds: a ping or a timeout is at most this late by design."""

_SLACK = 1e-6  # a bucket's checks run as of its end plus this, absorbing float rounding

T = TypeVar("T")


class Cancellable(Protocol):
    """What scheduling a call returns (``asyncio.TimerHandle`` fits)."""

    def cancel(self) -> None:
        """Make sure the call does not happen."""


Scheduler = Callable[[float, Callable[[], None]], Cancellable]
"""``call_at(when, callback)`` on some clock (``loop.call_at`` fits)."""


class Beat(Generic[T]):
    """One connection's place on a `HeartbeatWheel`; made by `HeartbeatWheel.add()`.

    ``owner`` is what the wheel's callbacks receive; it is ``None`` once stopped.
    ``last_seen`` and ``last_ping`` are the connection's times of its `Liveness`; the
    interval and the timeout are the wheel's (kept once, not once per connection).
    """

    __slots__ = ("last_ping", "last_seen", "owner", "slot", "wheel")

    def __init__(self, wheel: HeartbeatWheel[T], owner: T, now: float) -> None:
        self.last_seen = now
        self.last_ping = now
        self.wheel = wheel
        self.owner: T | None = owner
        self.slot = -1

    def touch(self, now: float | None = None) -> None:
        """Record an inbound frame now (or at ``now``); O(1), nothing is rescheduled."""
        self.last_seen = self.wheel.clock() if now is None else now

    def stop(self) -> None:
        """Leave the wheel for good; the callbacks never run for this owner again."""
        self.wheel.discard(self)


class HeartbeatWheel(Generic[T]):
    """Drives the `Liveness` of many owners from one timer.

    ``on_ping(owner)`` and ``on_timeout(owner)`` run from the timer callback: they must
    not block (the connection's ``enqueue`` and ``close_soon`` fit). ``is_busy(owner)``
    lets an owner report unread inbound frames as proof of life while its handler is
    slow. After a timeout the owner is not checked again; it still calls
    `Beat.stop()`. A callback that raises is logged and does not stop the others.
    The timer is cancelled whenever no owner is left.

    Args:
        interval: seconds between pings.
        timeout: seconds of silence after which ``on_timeout`` runs.
        tick: bucket width in seconds; default ``min(MAX_TICK, interval / 20)``.
        clock: current time (default: the running loop's ``time``).
        call_at: schedules the timer on that clock (default: the running loop's).
    """

    def __init__(
        self,
        *,
        interval: float,
        timeout: float,
        on_ping: Callable[[T], None],
        on_timeout: Callable[[T], None],
        is_busy: Callable[[T], bool] = lambda _: False,
        tick: float | None = None,
        clock: Callable[[], float] | None = None,
        call_at: Scheduler | None = None,
    ) -> None:
        if clock is None or call_at is None:
            loop = asyncio.get_running_loop()
            clock = clock or loop.time
            call_at = call_at or loop.call_at
        self.interval = interval
        self.timeout = timeout
        self.tick = tick if tick is not None else min(MAX_TICK, interval / 20)
        self.clock = clock
        self._call_at = call_at
        self._on_ping = on_ping
        self._on_timeout = on_timeout
        self._is_busy = is_busy
        # The one `Liveness` every check runs on, loaded with a beat's times each time.
        self._timing = Liveness.starting_at(0.0, interval=interval, timeout=timeout)
        self._buckets: dict[int, list[Beat[T]]] = {}
        self._keys: list[int] = []  # heap of the keys of _buckets
        self._handle: Cancellable | None = None
        self._armed = -1
        self._current = -1  # the bucket being processed: nothing is placed at or before it
        self._live = 0

    def __len__(self) -> int:
        """Owners on the wheel (added and not stopped)."""
        return self._live

    def add(self, owner: T) -> Beat[T]:
        """Start watching ``owner``: its first ping is due ``interval`` from now."""
        now = self.clock()
        beat = Beat(self, owner, now)
        self._live += 1
        self._place(beat)
        self._arm()
        return beat

    def discard(self, beat: Beat[T]) -> None:
        """Stop watching ``beat``'s owner (idempotent)."""
        if beat.owner is None:
            return
        beat.owner = None  # its bucket skips it; nothing keeps the owner alive
        self._live -= 1
        if self._live == 0:
            self._buckets.clear()
            self._keys.clear()
            self._disarm()

    def next_wakeup(self) -> float | None:
        """When the timer fires next, ``None`` when nothing is watched."""
        return self._keys[0] * self.tick if self._keys else None

    def advance(self, now: float) -> None:
        """Run every bucket due at ``now`` (the timer calls it; tests call it directly)."""
        tick = self.tick
        keys = self._keys
        buckets = self._buckets
        while keys and keys[0] * tick <= now + _SLACK:
            key = heapq.heappop(keys)
            bucket = buckets.pop(key, ())
            self._current = key
            at = max(now, key * tick) + _SLACK
            lag = now - key * tick  # how late the loop runs this bucket
            for beat in bucket:
                if beat.owner is not None and beat.slot == key:
                    self._visit(beat, at, lag if lag > tick else 0.0)
        self._current = -1
        self._arm()

    def _visit(self, beat: Beat[T], at: float, lag: float) -> None:
        owner = beat.owner
        beat.slot = -1
        if owner is None:
            return
        try:
            if lag:  # the loop was held: what arrived meanwhile is unread, not missing
                beat.last_seen = min(beat.last_seen + lag, at)
            if self._is_busy(owner):
                beat.last_seen = at
            timing = self._timing_of(beat)
            action = timing.check(at)
            if action is HeartbeatAction.TIMEOUT:
                self._on_timeout(owner)
                return
            if action is HeartbeatAction.PING:
                timing.pinged(at)
                beat.last_ping = timing.last_ping
                self._on_ping(owner)
        except Exception:  # one owner's failure must not starve the rest of the bucket
            logger.exception("heartbeat callback failed")
        if beat.owner is not None and beat.slot == -1:
            self._place(beat)

    def _timing_of(self, beat: Beat[T]) -> Liveness:
        """The wheel's `Liveness`, holding ``beat``'s times (until the next call)."""
        timing = self._timing
        timing.last_seen = beat.last_seen
        timing.last_ping = beat.last_ping
        return timing

    def _place(self, beat: Beat[T]) -> None:
        deadline = self._timing_of(beat).next_deadline()
        key = max(math.ceil(deadline / self.tick), self._current + 1)
        beat.slot = key
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [beat]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(beat)

    def _arm(self) -> None:
        if not self._keys:
            self._disarm()
            return
        first = self._keys[0]
        if first == self._armed and self._handle is not None:
            return
        self._disarm()
        self._armed = first
        self._handle = self._call_at(first * self.tick, self._fire)

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = -1

    def _fire(self) -> None:
        self._handle = None
        self._armed = -1
        self.advance(self.clock())
