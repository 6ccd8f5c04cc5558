"""The lifecycle both clients of ``tempest_ws.client`` show: connect, iterate, close.

`ClientSurface` is the public face of an [`Engine`][tempest_ws.client._engine.Engine]:
each method hands the call to the engine it was built with. Both
[`WebSocketClient`][tempest_ws.client.WebSocketClient] and
[`RawWebSocketClient`][tempest_ws.client.RawWebSocketClient] derive from it and add
their own sending side. Requires the ``client`` extra (websockets).
"""

from __future__ import annotations

from typing import Generic, Self, TypeVar

from tempest_ws.client._engine import Engine
from tempest_ws.exceptions import ConnectionClosedError
from tempest_ws.wire.codes import CloseCode

__all__ = ["ClientSurface"]

M = TypeVar("M")


class ClientSurface(Generic[M]):
    """Connect, iterate and close a reconnecting client whose messages are ``M``.

    ``id`` is a short random id naming the client in log records.
    """

    def __init__(self, engine: Engine[M]) -> None:
        self._engine = engine
        self.id = engine.id

    @property
    def safe_url(self) -> str:
        """The URL of the last connection attempt, without its query string."""
        return self._engine.safe_url

    @property
    def connected(self) -> bool:
        """True while a connection is open and ready (queue flushed, state restored)."""
        return self._engine.connected

    async def connect(self, *, wait: bool = True) -> None:
        """Start connecting (and reconnecting) in the background.

        With ``wait`` (the default) return once the first connection is ready; raises
        `ClientGaveUpError` if the client gives up first. Calling it again while
        running is harmless; after `close()` it raises ``ConnectionClosedError``.
        """
        await self._engine.connect(wait=wait)

    async def wait_connected(self) -> None:
        """Wait until a connection is ready; raise if the client gave up or was closed."""
        await self._engine.wait_connected()

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection with ``code`` and stop reconnecting; idempotent.

        Cancels and awaits every task the client started. Messages still in the offline
        queue are dropped (with a warning); pending requests fail with
        ``ConnectionClosedError``; ``async for`` ends after the received messages.
        Safe to call from a hook.
        """
        await self._engine.close(code, reason)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> M:
        return await self._engine.next()

    async def receive(self) -> M:
        """The next message; ``ConnectionClosedError`` once the client is closed."""
        try:
            return await self._engine.next()
        except StopAsyncIteration:
            raise ConnectionClosedError("client is closed", code=CloseCode.NORMAL) from None
