"""Requests of a client that wait for their reply, by ``request_id``.

`PendingRequests` maps a ``request_id`` to the future its caller awaits: the inbound
side resolves it with the first envelope carrying the id, a lost connection fails the
ones written on it, closing the client fails them all. No I/O here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from tempest_ws.wire.envelope import WSEnvelope

__all__ = ["PendingRequests"]


class PendingRequests:
    """The futures of one client's requests still waiting for their reply."""

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[WSEnvelope]] = {}

    def open(self, request_id: str) -> asyncio.Future[WSEnvelope]:
        """A new future for ``request_id``'s reply."""
        waiter: asyncio.Future[WSEnvelope] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        return waiter

    def close(self, request_id: str) -> None:
        """Stop waiting for ``request_id`` (a late reply then goes to the iterator)."""
        self._waiters.pop(request_id, None)

    def waiting(self, request_id: str | None) -> asyncio.Future[WSEnvelope] | None:
        """The future still waiting for ``request_id``'s reply, or ``None``."""
        waiter = None if request_id is None else self._waiters.get(request_id)
        return None if waiter is None or waiter.done() else waiter

    def resolve(self, envelope: WSEnvelope) -> bool:
        """Hand ``envelope`` to the request waiting for its ``request_id``; whether one was."""
        waiter = self.waiting(envelope.request_id)
        if waiter is None:
            return False
        waiter.set_result(envelope)
        return True

    def fail(self, request_ids: Iterable[str], error: Callable[[], BaseException]) -> None:
        """Fail the requests among ``request_ids`` still waiting, each with ``error()``."""
        for request_id in request_ids:
            waiter = self.waiting(request_id)
            if waiter is not None:
                waiter.set_exception(error())

    def fail_all(self, error: BaseException) -> None:
        """Fail every request still waiting with ``error``."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
