"""Topics on the envelope client: subscriptions and the router's built-in operations.

`TopicOperations` is the layer of [`WebSocketClient`][tempest_ws.client._client.WebSocketClient]
that sends ``subscribe``/``unsubscribe`` (remembered in a
[`Subscriptions`][tempest_ws.client._subscriptions.Subscriptions] and sent again on every new
connection, each with a ``request_id`` so a refusal is seen) and the typed helpers
``presence``, ``typing`` and ``receipt``. Each helper sends the built-in envelope of
``docs/realtime.md`` through ``request()``: an ``ack`` is success, an ``error`` raises
[`RequestError`][tempest_ws.exceptions.RequestError] with the server's code (``not_subscribed``,
``presence_disabled``, ``unavailable``, ``invalid_data``...). The server must answer
them (``make_websocket_router(builtins=...)``), otherwise the request times out.
Requires the ``client`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import abstractmethod
from typing import Any

from tempest_ws.client._history import ClientPositions
from tempest_ws.client._options import SubscribeErrorHook
from tempest_ws.client._reconnect import _ReconnectingClient
from tempest_ws.client._session import _call_hook, _Session
from tempest_ws.client._subscriptions import Answer, Subscriptions, request_error
from tempest_ws.exceptions import (
    ConnectionClosedError,
    MissingDependencyError,
    RequestError,
    RequestTimeoutError,
)
from tempest_ws.router.realtime import PRESENCE_GET, RECEIPT, TYPING
from tempest_ws.wire.envelope import ACK, ERROR, UNSUBSCRIBE, WSEnvelope, encode_envelope

try:
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = ["TopicOperations"]

logger = logging.getLogger("tempest_ws.client")


class TopicOperations(_ReconnectingClient[WSEnvelope]):
    """Subscriptions and built-in operations; the client sets the attributes below."""

    _subs: Subscriptions
    _positions: ClientPositions
    _on_subscribe_error: SubscribeErrorHook | None

    @abstractmethod
    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - the client's documented signature
    ) -> WSEnvelope:
        """Send a request and return its reply (implemented by the client)."""

    @property
    def subscriptions(self) -> frozenset[str]:
        """Topics subscribed with `subscribe()`, sent again after every reconnect."""
        return frozenset(self._subs.topics)

    async def subscribe(
        self,
        topic: str,
        *,
        confirm: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109 - applied with asyncio.timeout
    ) -> None:
        """Remember ``topic`` and send ``subscribe`` for it; when connected, await the answer.

        The ``data`` is ``{"topic": topic}``, plus ``offset`` and ``epoch`` with a known
        position (received, or seeded by ``positions=``) so the server replays what was
        missed; it carries a fresh ``request_id``. When connected (and ``confirm``) it
        returns once the server answered: an ``ack``, or any reply with the id, confirms
        the topic; an ``error`` removes it and raises `RequestError` with the
        server's code (``forbidden``, ``invalid_data``...). The answer is also yielded by
        the iterator, before the replay and the ``recovery``. No answer within
        ``timeout``: `RequestTimeoutError`, the topic stays remembered (a handler
        that answers ``subscribe`` without the ``request_id`` needs ``confirm=False``).

        While disconnected, or if the connection drops before the answer, it returns at
        once: every remembered topic is sent first thing on each new connection, and a
        refusal there goes to the ``on_subscribe_error`` hook (and a warning). A topic
        already remembered returns at once without sending.
        """
        self._raise_if_stopped(started_only=False)
        async with self._send_lock:
            if not self._subs.add(topic):
                return
            session = self._session
            if session is None or not session.ready:
                return
            request_id, frame = self._subs.request(topic, self._positions.subscribe_data(topic))
            waiter: asyncio.Future[WSEnvelope] = asyncio.get_running_loop().create_future()
            if confirm:
                self._requests[request_id] = waiter
                session.inflight.add(request_id)
            try:
                await session.ws.send(frame)
            except ConnectionClosed:  # the next connection sends it again
                self._requests.pop(request_id, None)
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
            if self._failure is not None:
                raise self._failure.with_traceback(None) from None
            return  # dropped (or closed by the application): the next connection resends
        finally:
            self._requests.pop(request_id, None)
            session.inflight.discard(request_id)
        if reply.type == ERROR:
            raise request_error(reply)

    async def unsubscribe(self, topic: str) -> None:
        """Forget ``topic`` and its position and, when connected, send ``unsubscribe``.

        Subscribing again later starts fresh: the server answers ``recovered: false``
        with the topic's current position, and the application reloads the topic.
        """
        self._raise_if_stopped(started_only=False)
        async with self._send_lock:
            if not self._subs.remove(topic):
                return
            self._positions.forget(topic)
            session = self._session
            if session is not None and session.ready:
                frame = encode_envelope({"type": UNSUBSCRIBE, "data": {"topic": topic}})
                with contextlib.suppress(ConnectionClosed):  # the next connection omits it
                    await session.ws.send(frame)

    async def presence(self, topic: str, *, timeout: float = 10.0) -> set[str]:  # noqa: ASYNC109
        """The user ids present in ``topic`` (``presence.get``), as strings.

        The connection must be subscribed to ``topic``. Raises `RequestError`
        (``not_subscribed``, ``presence_disabled``, ``unavailable``, ``invalid_data``),
        [`RequestTimeoutError`][tempest_ws.exceptions.RequestTimeoutError], or what ``request()``
        raises; a malformed ``ack`` raises `RequestError` with code
        ``invalid_answer``.
        """
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
        """Tell ``topic``'s other members that this user is (or stopped) typing.

        Returns once the server relayed it. Raises as `presence()` does
        (``not_subscribed``, ``unavailable``: relayed to this server's members only).
        """
        await self._operation(TYPING, {"topic": topic, "typing": typing}, timeout)

    async def receipt(
        self,
        topic: str,
        message_id: str | int,
        status: str,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Send a receipt (``status`` such as ``"read"``) for ``message_id`` in ``topic``.

        Returns once the server relayed it to the topic's members (this user's other
        connections included). Raises as `presence()` does; a ``status`` outside
        ``[a-z][a-z0-9_.-]{0,31}`` is ``invalid_data``.
        """
        data = {"topic": topic, "message_id": message_id, "status": status}
        await self._operation(RECEIPT, data, timeout)

    async def _operation(
        self,
        kind: str,
        data: dict[str, Any],
        timeout: float,  # noqa: ASYNC109 - passed on to request()
    ) -> dict[str, Any]:
        """Send ``kind`` and return its ``ack``'s ``data``; raise on an ``error``."""
        reply = await self.request(kind, data, timeout=timeout)
        if reply.type != ACK:
            raise request_error(reply)
        return reply.data if isinstance(reply.data, dict) else {}

    async def _resend_state(self, session: _Session) -> None:
        self._subs.new_connection()
        for topic in list(self._subs.topics):
            _, frame = self._subs.request(topic, self._positions.subscribe_data(topic))
            await session.ws.send(frame)

    async def _answered(self, answer: Answer, envelope: WSEnvelope) -> None:
        """The server answered a ``subscribe``: wake `subscribe()`, or report a refusal
        nobody awaits; the envelope itself is then yielded like any other."""
        if answer.removed:
            self._positions.forget(answer.topic)
        waiter = self._requests.get(envelope.request_id or "")
        if waiter is not None and not waiter.done():
            waiter.set_result(envelope)
        elif answer.error is not None and answer.removed:
            logger.warning("client %s: a subscription was refused (%s)", self.id, answer.error.code)
            hook = self._on_subscribe_error
            await _call_hook(self, "on_subscribe_error", hook, answer.topic, answer.error)
