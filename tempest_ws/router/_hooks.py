"""Lifecycle hooks: ``on_connect`` (may refuse with a close code) and ``on_disconnect``.

``on_connect(connection, ws)`` runs after the token resolved and before the connection is
registered, so a refused connection never counts toward the per-user cap, never shows
as online and never gets ``hello``. Its verdict: ``None``/``True`` accepts, ``False``
closes 4403, an int closes with that code (1000-1003, 1007-1014, 3000-4999). An
exception, a timeout or any other value closes 1011 and is logged.

``on_disconnect(connection)`` hooks (any number) run in order once the connection closed,
for every connection ``on_connect`` accepted; one failing or timing out is logged and
the next still runs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.router.realtime import OnConnect, OnDisconnect
from tempest_ws.wire.codes import CloseCode

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from tempest_ws.hub._connection import WebSocketConnection

__all__ = ["Hooks"]

logger = logging.getLogger("tempest_ws")


def _sendable(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455, section 7.4)."""
    return 3000 <= code <= 4999 or (1000 <= code <= 1014 and code not in (1004, 1005, 1006))


class Hooks:
    """The router's lifecycle hooks, each call bounded by ``timeout`` seconds.

    One instance per router, shared by its endpoint and handshake; the router's
    ``on_connect`` / ``on_disconnect`` decorators add to it with `set_connect()` and
    `add_disconnect()`.
    """

    def __init__(
        self,
        on_connect: OnConnect | None,
        on_disconnect: Sequence[OnDisconnect],
        *,
        timeout: float,
    ) -> None:
        self.on_connect = on_connect
        self.on_disconnect = tuple(on_disconnect)
        self.timeout = timeout

    def set_connect(self, hook: OnConnect) -> None:
        """Make ``hook`` the ``on_connect`` hook.

        Raises:
            ConfigurationError: there is one already.
        """
        if self.on_connect is not None:
            raise ConfigurationError("the router already has an on_connect hook")
        self.on_connect = hook

    def add_disconnect(self, hook: OnDisconnect) -> None:
        """Run ``hook`` after the ``on_disconnect`` hooks already there."""
        self.on_disconnect = (*self.on_disconnect, hook)

    async def connect(self, connection: WebSocketConnection, ws: WebSocket) -> int | None:
        """``None`` to go on, or the close code to refuse the connection with."""
        if self.on_connect is None:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                verdict = cast(object, self.on_connect(connection, ws))
                if inspect.isawaitable(verdict):
                    verdict = await verdict
        except Exception:
            logger.exception("on_connect failed for connection %s", connection.connection_id)
            return CloseCode.INTERNAL_ERROR
        if verdict is None or verdict is True:
            return None
        if verdict is False:
            return CloseCode.FORBIDDEN
        if isinstance(verdict, int) and _sendable(verdict):
            return int(verdict)
        logger.error(
            "on_connect returned %r for connection %s: not a close code",
            verdict,
            connection.connection_id,
        )
        return CloseCode.INTERNAL_ERROR

    async def disconnected(self, connection: WebSocketConnection) -> None:
        """Run every ``on_disconnect`` hook in order; failures are logged."""
        for hook in self.on_disconnect:
            try:
                async with asyncio.timeout(self.timeout):
                    result = hook(connection)
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                logger.exception(
                    "on_disconnect hook failed for connection %s", connection.connection_id
                )
