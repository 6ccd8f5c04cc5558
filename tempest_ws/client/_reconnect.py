"""The reconnect loop: each new connection of a client, with backoff in between.

`Connections` is an async iterator of open websockets connections. After each one (or
each failed attempt) it asks the [`ReconnectPolicy`][tempest_ws.client._backoff.ReconnectPolicy]
what to do with the [`Disconnect`][tempest_ws.client.Disconnect] it was given in
`Connections.last`, waits out the delay (cut short when the client stops) and makes
the next attempt with its [`Dialer`][tempest_ws.client._dial.Dialer]. Requires the
``client`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Self

from tempest_ws.client._backoff import Action, ReconnectPolicy
from tempest_ws.client._dial import Dialer
from tempest_ws.client._disconnect import Disconnect
from tempest_ws.exceptions import ClientGaveUpError, MissingDependencyError, UnauthorizedError

try:
    from websockets.asyncio.client import ClientConnection
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = ["Connections"]

logger = logging.getLogger("tempest_ws.client")


class Connections:
    """``async for ws in Connections(...)``: each new connection, backoff in between.

    The loop body serves a connection and stores how it ended in `last`; the next
    step asks the policy, waits out the delay, fetches a token and connects again. It
    ends once ``stopped`` is set (the application closed the client) and raises
    `ClientGaveUpError` when the policy gives up.
    """

    def __init__(
        self, dialer: Dialer, policy: ReconnectPolicy, *, stopped: asyncio.Event, owner: str
    ) -> None:
        self._dialer = dialer
        self._policy = policy
        self._stopped = stopped
        self._owner = owner
        self.last: Disconnect | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ClientConnection:
        while True:  # one turn per attempt; the policy bounds the failures
            if self._stopped.is_set():
                raise StopAsyncIteration
            last, self.last = self.last, None
            if last is not None:
                decision = self._policy.decide(last)
                if decision.action is Action.STOP:
                    raise StopAsyncIteration
                if decision.action is Action.GIVE_UP:
                    kind = UnauthorizedError if decision.unauthorized else ClientGaveUpError
                    raise kind(decision.why, disconnect=last)
                logger.info(
                    "client %s: %s; reconnecting in %.2fs",
                    self._owner,
                    decision.why,
                    decision.delay,
                )
                await self._pause(decision.delay)
            if self._stopped.is_set():
                raise StopAsyncIteration
            outcome = await self._dialer.dial()
            if isinstance(outcome, Disconnect):
                self.last = outcome
                continue
            return outcome

    async def _pause(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._stopped.wait()
        except TimeoutError:
            pass
