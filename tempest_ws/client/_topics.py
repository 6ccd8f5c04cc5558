"""Topics on the envelope client: subscriptions and the router's built-in operations.

`Topics` is the part of [`WebSocketClient`][tempest_ws.client.WebSocketClient] that sends
``subscribe``/``unsubscribe`` (remembered in a
[`Subscriptions`][tempest_ws.client._subscriptions.Subscriptions] and sent again on every
new connection, each with a ``request_id`` so a refusal is seen) and the typed helpers
``presence``, ``typing`` and ``receipt``. Each helper sends the built-in envelope of
``docs/realtime.md`` as a request: an ``ack`` is success, an ``error`` raises
[`RequestError`][tempest_ws.exceptions.RequestError] with the server's code
(``not_subscribed``, ``presence_disabled``, ``unavailable``, ``invalid_data``...). The
server must answer them (``make_websocket_router(builtins=...)``), otherwise the request
times out. The public docstrings are the client's. Requires the ``client`` extra
(websockets).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tempest_ws.client._engine import Engine
from tempest_ws.client._history import ClientPositions
from tempest_ws.client._pending import PendingRequests
from tempest_ws.client._requests import Requester
from tempest_ws.client._subscriptions import Subscriptions, request_error
from tempest_ws.exceptions import (
    ConnectionClosedError,
    MissingDependencyError,
    RequestError,
    RequestTimeoutError,
)
from tempest_ws.wire.envelope import (
    ACK,
    ERROR,
    PRESENCE_GET,
    RECEIPT,
    TYPING,
    UNSUBSCRIBE,
    WSEnvelope,
    encode_envelope,
)

try:
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = ["Topics"]


class Topics:
    """Subscriptions and built-in operations of one envelope client.

    ``engine`` writes the frames, ``requester`` sends the built-in operations,
    ``requests`` holds the ``subscribe`` awaiting an answer; ``subscriptions`` and
    ``positions`` are shared with the client's dialect, which reads the answers.
    """

    def __init__(
        self,
        *,
        engine: Engine[WSEnvelope],
        requester: Requester,
        requests: PendingRequests,
        subscriptions: Subscriptions,
        positions: ClientPositions,
    ) -> None:
        self._engine = engine
        self._requester = requester
        self._requests = requests
        self._subs = subscriptions
        self._positions = positions

    @property
    def topics(self) -> frozenset[str]:
        """Topics subscribed with `subscribe()`, sent again after every reconnect."""
        return frozenset(self._subs.topics)

    async def subscribe(
        self,
        topic: str,
        *,
        confirm: bool,
        timeout: float,  # noqa: ASYNC109 - applied with asyncio.timeout
    ) -> None:
        """Remember ``topic``, send ``subscribe`` and, when connected, await the answer
        (see `WebSocketClient.subscribe()`)."""
        engine = self._engine
        engine.check_open(started_only=False)
        async with engine.ready_session() as session:
            if not self._subs.add(topic):
                return
            if session is None:
                return
            request_id, frame = self._subs.request(topic, self._positions.subscribe_data(topic))
            if confirm:
                waiter = self._requests.open(request_id)
                session.inflight.add(request_id)
            try:
                await session.ws.send(frame)
            except ConnectionClosed:  # the next connection sends it again
                self._requests.close(request_id)
                return
        if not confirm:
            return
        try:
            async with asyncio.timeout(timeout):
                reply = await waiter
        except TimeoutError:
            raise RequestTimeoutError(
                f"no answer to subscribe within {timeout:.1f}s: the server must answer "
                "'subscribe' with an envelope carrying its request_id (the router's "
                "built-ins do: make_websocket_router(builtins=True)); a handler that "
                "does not answer needs subscribe(topic, confirm=False)",
                code="request_timeout",
            ) from None
        except ConnectionClosedError:
            if engine.failure is not None:
                raise engine.failure.with_traceback(None) from None
            return  # dropped (or closed by the application): the next connection resends
        finally:
            self._requests.close(request_id)
            session.inflight.discard(request_id)
        if reply.type == ERROR:
            raise request_error(reply)

    async def unsubscribe(self, topic: str) -> None:
        """Forget ``topic`` and its position and, when connected, send ``unsubscribe``."""
        self._engine.check_open(started_only=False)
        async with self._engine.ready_session() as session:
            if not self._subs.remove(topic):
                return
            self._positions.forget(topic)
            if session is not None:
                frame = encode_envelope({"type": UNSUBSCRIBE, "data": {"topic": topic}})
                with contextlib.suppress(ConnectionClosed):  # the next connection omits it
                    await session.ws.send(frame)

    async def presence(self, topic: str, *, timeout: float = 10.0) -> set[str]:  # noqa: ASYNC109
        """The user ids present in ``topic`` (see `WebSocketClient.presence()`)."""
        data = await self._operation(PRESENCE_GET, {"topic": topic}, timeout)
        users = data.get("users")
        if not isinstance(users, list):
            raise RequestError("presence answer without a users list", code="invalid_answer")
        return {str(user) for user in users}

    async def typing(
        self,
        topic: str,
        typing: bool = True,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Send a typing indicator (see `WebSocketClient.typing()`)."""
        await self._operation(TYPING, {"topic": topic, "typing": typing}, timeout)

    async def receipt(
        self,
        topic: str,
        message_id: str | int,
        status: str,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Send a receipt (see `WebSocketClient.receipt()`)."""
        data = {"topic": topic, "message_id": message_id, "status": status}
        await self._operation(RECEIPT, data, timeout)

    async def _operation(
        self,
        kind: str,
        data: dict[str, Any],
        timeout: float,  # noqa: ASYNC109 - passed on to the requester
    ) -> dict[str, Any]:
        """Send ``kind`` and return its ``ack``'s ``data``; raise on an ``error``."""
        reply = await self._requester.ask(kind, data, timeout=timeout)
        if reply.type != ACK:
            raise request_error(reply)
        return reply.data if isinstance(reply.data, dict) else {}
