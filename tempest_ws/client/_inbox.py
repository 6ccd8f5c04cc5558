"""What a client received and has not handed to the application yet.

`Inbox` is the bounded FIFO behind ``async for`` and ``receive()``: each message with
its history position (a [`Mark`][tempest_ws.client._history.Mark], or ``None``). When the
application does not keep up, the oldest message is dropped with a warning. Its change
signal also wakes on connection-state changes, so whoever waits for a message (or for a
connection) notices when the client connects, disconnects or stops. No I/O here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Generic, TypeVar

from tempest_ws.client._history import Mark

__all__ = ["Inbox"]

logger = logging.getLogger("tempest_ws.client")

M = TypeVar("M")


class Inbox(Generic[M]):
    """Received messages of type ``M``, at most ``size`` of them (at least one)."""

    def __init__(self, size: int, *, owner: str) -> None:
        self._items: deque[tuple[M, Mark | None]] = deque()
        self._size = max(1, size)
        self._owner = owner
        self.dropped = 0
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: M, mark: Mark | None = None) -> None:
        """Queue ``message`` (``mark``: its history position) and wake the readers."""
        if len(self._items) >= self._size:
            self._items.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning(
                    "client %s: application not reading; dropped %d received messages",
                    self._owner,
                    self.dropped,
                )
        self._items.append((message, mark))
        self.notify()

    def take(self) -> tuple[M, Mark | None]:
        """The oldest message and its mark (``IndexError`` when empty)."""
        return self._items.popleft()

    def notify(self) -> None:
        """Wake everyone waiting in `changed()`."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed(self) -> None:
        """Wait for the next message or state change."""
        await self._changed.wait()
