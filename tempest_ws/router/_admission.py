"""How many handshakes one process works on at once, and the answer to the ones past it.

A handshake (accept, token, ``on_connect``, registration) costs the server far more than
refusing one, and an event loop works on all the handshakes it holds at once: with more
in progress than it finishes in a client's handshake timeout, every one of them times
out on the client's side and the work done for it is lost, while the client retries. So
past ``WS_MAX_PENDING_HANDSHAKES`` a new handshake is refused before accept with HTTP
503 and a ``Retry-After`` header (the Python client then waits its long backoff), and
the handshakes in progress finish in time.
"""

from __future__ import annotations

import logging
import time

__all__ = ["RETRY_AFTER_SECONDS", "Admission"]

logger = logging.getLogger("tempest_ws")

RETRY_AFTER_SECONDS = 5
"""The ``Retry-After`` a refused handshake is answered with (seconds)."""
_REPORT_EVERY = 10.0  # seconds between two warnings about refused handshakes


class Admission:
    """The handshakes in progress in one endpoint, bounded by ``limit`` (0: no bound)."""

    __slots__ = ("_reported", "_since_report", "limit", "pending", "shed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0
        """Handshakes admitted and not yet registered or refused."""
        self.shed = 0
        """Handshakes refused with HTTP 503 because ``limit`` were in progress."""
        self._since_report = 0
        self._reported = 0.0

    def enter(self) -> bool:
        """Admit one more handshake (the caller calls `leave()` once it is through), or
        count it as shed and return ``False``."""
        if self.limit and self.pending >= self.limit:
            self.shed += 1
            self._since_report += 1
            now = time.monotonic()
            if now - self._reported >= _REPORT_EVERY:
                logger.warning(
                    "%d handshake(s) refused with HTTP 503 (Retry-After %d): %d in progress "
                    "(WS_MAX_PENDING_HANDSHAKES)",
                    self._since_report,
                    RETRY_AFTER_SECONDS,
                    self.pending,
                )
                self._reported = now
                self._since_report = 0
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        """One admitted handshake is through (registered, refused or abandoned)."""
        self.pending -= 1
