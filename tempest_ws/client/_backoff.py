"""Reconnect logic without I/O: backoff delays, the close-code policy, the offline queue.

Everything the client decides between two connections lives here as plain objects tested
without sockets or sleeps: how long to wait (`Backoff`, driven by an injectable
``random.Random``), whether to try again at all (`ReconnectPolicy`, given a
[`Disconnect`][tempest_ws.client.Disconnect]) and what to keep meanwhile (`OfflineQueue`).
The I/O side is ``tempest_ws.client``.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Generic, Literal, TypeVar

from tempest_ws.client._disconnect import Disconnect
from tempest_ws.exceptions import ConfigurationError, SendQueueFullError
from tempest_ws.wire.codes import CloseCode

__all__ = [
    "LONG_BACKOFF_CODES",
    "Action",
    "Backoff",
    "Decision",
    "Disconnect",
    "OfflineQueue",
    "ReconnectPolicy",
]

logger = logging.getLogger("tempest_ws.client")

LONG_BACKOFF_CODES = frozenset({CloseCode.TOO_MANY_CONNECTIONS, CloseCode.TRY_AGAIN_LATER})
"""Close codes after which the client waits out the long backoff (server busy / evicted)."""
_LONG_BACKOFF_STATUSES = frozenset({HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE})

Overflow = Literal["drop_oldest", "raise"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter between a floor and a growing ceiling.

    Attempt ``n`` (counting from 0) waits a uniformly random time in
    ``[min_delay, ceiling_n]`` with ``ceiling_n = min(max_delay, min_delay * factor**(n+1))``.
    So the first delay is already random (clients dropped together by one server restart
    do not come back together), every delay lies within ``[min_delay, max_delay]``, and
    once the ceiling reaches ``max_delay`` the delays spread over the whole range.

    Raises:
        ConfigurationError: ``min_delay <= 0``, ``max_delay < min_delay`` or ``factor < 1``.
    """

    min_delay: float = 0.5
    max_delay: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.min_delay <= self.max_delay:
            raise ConfigurationError("Backoff needs 0 < min_delay <= max_delay")
        if self.factor < 1:
            raise ConfigurationError("Backoff factor must be at least 1")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """An endless generator of delays in seconds; ``rng`` makes it reproducible."""
        rng = rng if rng is not None else random.Random()
        ceiling = self.min_delay
        while True:
            ceiling = min(self.max_delay, ceiling * self.factor)
            yield rng.uniform(self.min_delay, ceiling)


class Action(enum.Enum):
    """What `ReconnectPolicy.decide()` tells the client to do."""

    RECONNECT = "reconnect"
    STOP = "stop"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one `ReconnectPolicy.decide()`: ``action``, ``delay`` and why."""

    action: Action
    delay: float = 0.0
    why: str = ""
    unauthorized: bool = False


class ReconnectPolicy:
    """Decides after every disconnect whether and when to connect again.

    In order:

    - closed by the application (``Disconnect.by_user``): stop;
    - ``is_fatal(disconnect)`` is true: give up;
    - 4401 / HTTP 401: reconnect (the client fetches a new token first), but give up after
      ``max_unauthorized`` in a row; a connection that reached ``hello`` ends the streak;
    - more than ``max_retries`` attempts in a row (if set): give up;
    - 4429, 1013, HTTP 429/503: wait a delay from ``long_backoff``, and at least the
      ``Retry-After`` the server sent with a refused handshake (capped at
      ``long_backoff.max_delay``);
    - 1012 (service restart): a delay from ``backoff``, or a uniformly random time in
      ``[0, restart_spread]`` (capped at ``backoff.max_delay``) when that is longer, so
      the clients of a restarting server come back spread over that window;
    - anything else (1000 from the server, 1001, 1006, 1011, 4408, refused TCP
      connections...): wait a delay from ``backoff``.

    A connection that stayed up for ``min_uptime`` seconds resets both backoffs and the
    attempt count, so a server that accepts and then crashes at once still backs off.
    """

    def __init__(
        self,
        *,
        is_fatal: Callable[[Disconnect], bool],
        backoff: Backoff | None = None,
        long_backoff: Backoff | None = None,
        max_unauthorized: int = 3,
        max_retries: int | None = None,
        min_uptime: float = 5.0,
        restart_spread: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_unauthorized < 1:
            raise ConfigurationError("max_unauthorized must be at least 1")
        if max_retries is not None and max_retries < 0:
            raise ConfigurationError("max_retries must be None or >= 0")
        if not restart_spread >= 0:
            raise ConfigurationError("restart_spread must be >= 0 seconds")
        self._is_fatal = is_fatal
        self._backoff = backoff or Backoff()
        self._long_backoff = long_backoff or Backoff(min_delay=5.0, max_delay=120.0)
        self.max_unauthorized = max_unauthorized
        self._max_retries = max_retries
        self._min_uptime = min_uptime
        self._restart_spread = restart_spread
        self._rng = rng if rng is not None else random.Random()
        self.unauthorized_streak = 0
        self.attempts = 0
        self._reset()

    def _reset(self) -> None:
        self.attempts = 0
        self._delays = self._backoff.delays(self._rng)
        self._long_delays = self._long_backoff.delays(self._rng)

    def decide(self, disconnect: Disconnect) -> Decision:
        """Update the streaks with ``disconnect`` and return what to do next."""
        if disconnect.by_user:
            return Decision(Action.STOP, why="closed by the application")
        if disconnect.established:
            self.unauthorized_streak = 0
        if disconnect.uptime >= self._min_uptime:
            self._reset()
        if self._is_fatal(disconnect):
            return Decision(Action.GIVE_UP, why=f"fatal {disconnect.describe()}")
        if disconnect.unauthorized:
            self.unauthorized_streak += 1
            if self.unauthorized_streak >= self.max_unauthorized:
                return Decision(
                    Action.GIVE_UP,
                    why=f"the server refused the token {self.unauthorized_streak} times in a row "
                    f"(last: {disconnect.describe()})",
                    unauthorized=True,
                )
        self.attempts += 1
        if self._max_retries is not None and self.attempts > self._max_retries:
            return Decision(
                Action.GIVE_UP,
                why=f"gave up after {self._max_retries} reconnect attempts "
                f"(last: {disconnect.describe()})",
            )
        long = (
            disconnect.code in LONG_BACKOFF_CODES
            or disconnect.http_status in _LONG_BACKOFF_STATUSES
        )
        delay = next(self._long_delays if long else self._delays)
        if disconnect.code == CloseCode.SERVICE_RESTART and self._restart_spread:
            # Every client of a restarting server gets 1012 at once: full jitter over the
            # restart window (within max_delay) so they do not all come back together.
            window = min(self._restart_spread, self._backoff.max_delay)
            delay = max(delay, self._rng.uniform(0.0, window))
        if disconnect.retry_after is not None:  # the server said when; never sooner
            delay = max(delay, min(disconnect.retry_after, self._long_backoff.max_delay))
        return Decision(Action.RECONNECT, delay=delay, why=disconnect.describe())


class OfflineQueue(Generic[T]):
    """The bounded FIFO of messages sent while disconnected.

    When full, ``"drop_oldest"`` discards the oldest entry with a warning on the
    ``tempest_ws.client`` logger (never the message itself); ``"raise"`` refuses the new
    one with `SendQueueFullError`. A ``maxsize`` of 0 keeps nothing.
    """

    def __init__(self, maxsize: int, overflow: Overflow = "drop_oldest") -> None:
        if maxsize < 0:
            raise ConfigurationError("queue_size must be >= 0")
        if overflow not in ("drop_oldest", "raise"):
            raise ConfigurationError("queue_overflow must be 'drop_oldest' or 'raise'")
        self.maxsize = maxsize
        self.overflow: Overflow = overflow
        self.dropped = 0
        self._items: deque[T] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Append ``item``, making room as ``overflow`` says."""
        if len(self._items) >= self.maxsize:
            if self.overflow == "raise":
                raise SendQueueFullError(
                    f"offline queue full ({self.maxsize} messages); not connected",
                    code="queue_full",
                )
            self.dropped += 1
            if not self._items:
                logger.warning("offline queue has no room (size 0); dropped a message")
                return
            self._items.popleft()
            logger.warning("offline queue full (%d messages); dropped the oldest", self.maxsize)
        self._items.append(item)

    def peek(self) -> T:
        """The oldest item (``IndexError`` when empty)."""
        return self._items[0]

    def pop(self) -> T:
        """Remove and return the oldest item (``IndexError`` when empty)."""
        return self._items.popleft()

    def requeue(self, item: T) -> None:
        """Put back an item taken by `pop()` whose write failed (first in line again)."""
        self._items.appendleft(item)

    def discard(self, item: T) -> bool:
        """Remove ``item`` if still queued; return whether it was."""
        try:
            self._items.remove(item)
        except ValueError:
            return False
        return True

    def clear(self) -> int:
        """Drop everything; return how many items were dropped."""
        count = len(self._items)
        self._items.clear()
        return count
