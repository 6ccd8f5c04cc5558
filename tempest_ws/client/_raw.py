"""The raw client: the reconnecting engine for any WebSocket server, without the envelope.

`RawDialect` hands every frame to the inbox as it arrived (``str`` or ``bytes``), needs
no ``hello`` and sends nothing of its own; its watchdog runs only with a
``silence_timeout``. Requires the ``client`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Coroutine
from typing import Any, Unpack

from tempest_ws.client._backoff import OfflineQueue
from tempest_ws.client._dial import Dialer, NoCredentials, UrlSource
from tempest_ws.client._engine import Engine
from tempest_ws.client._history import Mark
from tempest_ws.client._inbox import Inbox
from tempest_ws.client._options import ClientOptions, Timeouts, build_policy, check_known
from tempest_ws.client._pending import PendingRequests
from tempest_ws.client._session import Session
from tempest_ws.client._surface import ClientSurface

__all__ = ["RawDialect", "RawWebSocketClient"]


class RawDialect:
    """Frames in, as they are; a watchdog only with a ``silence`` timeout."""

    def __init__(self, inbox: Inbox[str | bytes], *, silence: float | None) -> None:
        self._inbox = inbox
        self._silence = silence

    async def on_frame(self, session: Session, frame: str | bytes) -> None:
        """Queue ``frame`` for the iterator."""
        self._inbox.put(frame)

    async def ping(self, session: Session) -> None:
        """Nothing: websockets' protocol pings run on their own (``keepalive``)."""

    async def await_ready(self, session: Session, reader: asyncio.Task[None]) -> bool:
        """Ready at once: the handshake is all there is."""
        return True

    def cadence(self, session: Session) -> tuple[float, float] | None:
        """No pings of its own; the silence timeout if one was given."""
        return (math.inf, self._silence) if self._silence else None

    async def resend_state(self, session: Session) -> None:
        """Nothing: a raw stream has no state the client knows of."""

    def session_work(self, session: Session) -> Coroutine[Any, Any, None] | None:
        """None."""
        return None

    def hand(self, mark: Mark) -> None:
        """Nothing: raw messages carry no history position."""


class RawWebSocketClient(ClientSurface[str | bytes]):
    """The reconnecting engine for any WebSocket server, without the envelope.

    ``async for`` yields ``str`` for text frames and ``bytes`` for binary frames;
    `send()` sends a ``str`` as text and ``bytes`` as binary. Headers,
    subprotocols, ``max_size``, backoff, the close-code policy, the offline queue and the
    hooks work as for `WebSocketClient` (see `ClientOptions`), and ``url``
    may be a function as there; there is no token, no ``hello`` and no subscription.
    Silence detection is off unless ``silence_timeout`` is given (websockets' protocol
    pings still run, see ``keepalive``).
    """

    def __init__(self, url: UrlSource, **options: Unpack[ClientOptions]) -> None:
        owner = uuid.uuid4().hex[:8]
        check_known(options)
        timeouts = Timeouts.of(options)
        inbox: Inbox[str | bytes] = Inbox(options.get("inbox_size", 10_000), owner=owner)
        engine: Engine[str | bytes] = Engine(
            owner=owner,
            dialer=Dialer(url, options, NoCredentials(), timeouts=timeouts, owner=owner),
            policy=build_policy(options),
            dialect=RawDialect(inbox, silence=timeouts.silence),
            inbox=inbox,
            outbox=OfflineQueue(
                options.get("queue_size", 1000), options.get("queue_overflow", "drop_oldest")
            ),
            requests=PendingRequests(),
            timeouts=timeouts,
            on_connect=options.get("on_connect"),
            on_disconnect=options.get("on_disconnect"),
        )
        super().__init__(engine)

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for ``str``, binary for ``bytes``); queued while offline."""
        if not isinstance(message, str | bytes):
            raise TypeError("message must be str or bytes")
        await self._engine.send(message)
