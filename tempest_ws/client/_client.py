"""A reconnecting WebSocket client for tempest_ws servers, and a raw mode for any server.

`WebSocketClient` speaks the envelope: it sends the token as the ``bearer``
subprotocol (asking the token provider again before every reconnect), answers ``ping``
envelopes, measures latency with its own pings, closes 4408 and reconnects when the
server stays silent past the deadline its ``hello`` announced, refreshes the token in
band before it expires, restores topic subscriptions, queues what is sent while offline
and correlates ``request()`` replies.
`RawWebSocketClient` keeps the reconnection and drops the envelope.

This module holds the two public clients and what is specific to each; the engine they
share is ``tempest_ws._reconnect`` (lifecycle, inbox, offline queue, reconnect loop, the
URL or URL function), one connection's lifetime is ``tempest_ws._client_session``, the
options are ``tempest_ws._client_options`` and the pure logic between connections
(jittered exponential backoff, policy by close code) is ``tempest_ws._backoff``. The
envelope client's layers are ``tempest_ws._client_auth`` (the token in the handshake,
in-band ``auth.refresh`` before it expires) and ``tempest_ws._client_topics``
(subscriptions, whose refusals ``subscribe()`` raises, and the built-in operations). Requires the
``client`` extra (websockets). Every task the client starts is cancelled and awaited by
`close()`; logs go to the ``tempest_ws.client`` logger and never contain a token or
a message body.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any, Unpack

from tempest_ws.client._auth import AuthMode, TokenAuth, TokenGrant
from tempest_ws.client._backoff import Backoff, Disconnect, SendQueueFullError
from tempest_ws.client._history import ClientPositions, Mark
from tempest_ws.client._options import (
    ClientOptions,
    EnvelopeHook,
    TokenProvider,
    default_is_fatal,
    positive,
)
from tempest_ws.client._options import (
    DisconnectHook as DisconnectHook,  # hook types, for annotations
)
from tempest_ws.client._options import Hook as Hook
from tempest_ws.client._options import RecoveryHook as RecoveryHook
from tempest_ws.client._options import SubscribeErrorHook as SubscribeErrorHook
from tempest_ws.client._reconnect import UrlSource, _ReconnectingClient
from tempest_ws.client._session import _call_hook, _Session
from tempest_ws.client._subscriptions import Subscriptions
from tempest_ws.client._topics import TopicOperations
from tempest_ws.exceptions import (
    ClientGaveUpError,
    ConfigurationError,
    EnvelopeError,
    MissingDependencyError,
    RequestError,
    RequestTimeoutError,
    UnauthorizedError,
)
from tempest_ws.history.base import Position
from tempest_ws.history.wire import RECOVERY, StampedEnvelope
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import (
    HELLO,
    PING,
    PONG,
    RESYNC,
    WSEnvelope,
    decode_frame,
    encode_envelope,
)

try:
    import websockets as _websockets  # noqa: F401 - fail early, naming the extra
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = [
    "Backoff",
    "ClientGaveUpError",
    "ClientOptions",
    "Disconnect",
    "Position",
    "RawWebSocketClient",
    "RequestError",
    "RequestTimeoutError",
    "SendQueueFullError",
    "StampedEnvelope",
    "UnauthorizedError",
    "WebSocketClient",
    "default_is_fatal",
]

logger = logging.getLogger("tempest_ws.client")

_MAX_CADENCE = 86_400.0


def _cadence_value(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return min(float(value), _MAX_CADENCE)
    return default


class WebSocketClient(TokenAuth, TopicOperations):
    """A reconnecting client for a tempest_ws endpoint; ``async for`` yields envelopes.

    Args:
        url: ``ws://`` or ``wss://`` URL of the endpoint (a query token is never logged),
            or a function (plain or async) returning one, called before every connection
            attempt: several nodes without a load balancer. A function that raises is
            retried with backoff; one that returns an invalid URL stops the client
            (``ConfigurationError`` as the give-up cause).
        token: a fixed bearer token.
        token_provider: ``async () -> str``, awaited before every connection attempt, so
            a 4401 (expired token) is followed by a fresh one, and before the token
            expires, to refresh it in band. Exclusive with ``token``.
        refresh_margin: seconds before a provider's token expires (its JWT ``exp``,
            read without verifying it) to send a fresh one as ``auth.refresh`` on the
            open connection, but not earlier than half the token's lifetime (default
            30; ``None``: never refresh in band, reconnect on the 4401 instead).
        auth: how the token travels: ``"subprotocol"`` (``bearer, <token>``, the
            default), ``"header"`` (``Authorization: Bearer``) or ``"query"``
            (``?token=``).
        heartbeat_interval: seconds between the client's own ``ping`` envelopes, whose
            ``pong`` replies feed `latency` (default: the ``hello``'s
            ``heartbeat_seconds``).
        on_resync: ``(envelope)`` hook for a ``resync`` envelope (which is also yielded).
        on_recovery: ``(topic, recovered, envelope)`` hook for a ``recovery`` envelope
            (which is also yielded), called when it arrives, before the application can
            take it from the iterator, whether or not a ``request()`` claims it.
            ``recovered`` false means: reload ``topic`` from your source of truth.
        positions: ``{topic: (offset, epoch)}`` to resume from (say, stored by a
            previous run from `positions`); sent with the topic's ``subscribe``.
        on_subscribe_error: ``(topic, error)`` hook for a refused ``subscribe`` that
            no `subscribe()` call awaits (sent on a new connection); the topic is
            removed from `subscriptions` first.
        **options: the `ClientOptions`.

    The iterator never yields ``hello``, ``ping``, ``pong`` or replies claimed by
    `request()`; a ``recovery`` envelope with a malformed ``data`` is dropped with a
    warning. A message of a history topic is yielded as a `StampedEnvelope`
    (a ``WSEnvelope`` with ``topic``, ``offset`` and ``epoch``). A connection counts as
    ready once the ``hello`` arrived (within ``open_timeout``, else it is closed 4408
    and retried), the subscriptions were sent again and the offline queue was flushed,
    in that order.

    Raises:
        ConfigurationError: both ``token`` and ``token_provider``, an unknown ``auth``,
            a URL that is not ``ws``/``wss``, malformed ``positions`` or an invalid
            option.
    """

    def __init__(
        self,
        url: UrlSource,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        auth: AuthMode = "subprotocol",
        refresh_margin: float | None = 30.0,
        heartbeat_interval: float | None = None,
        on_resync: EnvelopeHook | None = None,
        on_recovery: RecoveryHook | None = None,
        on_subscribe_error: SubscribeErrorHook | None = None,
        positions: Mapping[str, tuple[int, str]] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        if token is not None and token_provider is not None:
            raise ConfigurationError("pass token or token_provider, not both")
        if auth not in ("subprotocol", "header", "query"):
            raise ConfigurationError("auth must be 'subprotocol', 'header' or 'query'")
        super().__init__(url, options)
        self._token = token
        self._token_provider = token_provider
        self._auth = auth
        self._heartbeat_interval = (
            None
            if heartbeat_interval is None
            else positive(heartbeat_interval, "heartbeat_interval")
        )
        self._refresh_margin = (
            None if refresh_margin is None else positive(refresh_margin, "refresh_margin")
        )
        self._grant = TokenGrant(None, 0.0)
        self._on_resync = on_resync
        self._on_recovery = on_recovery
        self._on_subscribe_error = on_subscribe_error
        self._positions = ClientPositions(self.id, positions)
        self._subs = Subscriptions(self.id)
        self._pings: dict[str, float] = {}
        self._ping_seq = 0
        self._latency: float | None = None

    @property
    def latency(self) -> float | None:
        """Seconds of the last ping round-trip (``None`` before the first ``pong``)."""
        return self._latency

    @property
    def positions(self) -> Mapping[str, Position]:
        """Read-only ``{topic: Position}`` of the last history message handed to you.

        A message's position counts once the iterator yields it (or ``request()``
        returns it): by the time your loop body runs, it is included. A ``recovery``
        envelope moves its topic to the envelope's ``offset``/``epoch`` the same way.
        Store it *after* handling a message for at-least-once delivery across a
        restart, and pass it back as ``positions=``. Resubscriptions resume from the
        last position *received*, which may be ahead (messages still waiting in the
        inbox), so nothing is asked for twice. A live view: it changes as you iterate.
        """
        return self._positions.view

    @property
    def connection_id(self) -> str | None:
        """The server's id of the current connection (its ``hello``'s ``connection_id``).

        ``None`` while disconnected or when the server sent none.
        """
        session = self._session
        value = None if session is None else session.hello_data.get("connection_id")
        return value if isinstance(value, str) else None

    async def send(self, type: str, data: Any = None) -> None:
        """Send ``{"type": type, "data": data}`` (``data`` defaults to ``{}``).

        Written at once when connected; queued (in order) while disconnected or while
        older messages wait. Raises `SendQueueFullError` in ``"raise"`` overflow
        mode, ``ConnectionClosedError`` after `close()`, the give-up exception after
        the client gave up, ``TypeError`` for data JSON cannot encode.
        """
        body = {"type": type, "data": {} if data is None else data}
        await self._send_frame(encode_envelope(body))

    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - the documented API, applied with asyncio.timeout
    ) -> WSEnvelope:
        """Send an envelope with a fresh ``request_id``; return the first reply carrying it.

        The reply is returned whatever its ``type`` (an ``error`` envelope included) and
        is not yielded by the iterator. ``timeout`` covers queueing and waiting: when it
        expires the request is removed from the offline queue if still there and
        `RequestTimeoutError` is raised. If the connection drops after the
        request was written, ``ConnectionClosedError`` is raised at once.
        """
        request_id = uuid.uuid4().hex
        frame = encode_envelope(
            {"type": type, "data": {} if data is None else data, "request_id": request_id}
        )
        waiter: asyncio.Future[WSEnvelope] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = waiter
        try:
            async with asyncio.timeout(timeout):
                await self._send_frame(frame, request_id)
                return await waiter
        except TimeoutError:
            self._outbox.discard((frame, request_id))
            raise RequestTimeoutError(
                f"no reply to {type!r} within {timeout:.1f}s", code="request_timeout"
            ) from None
        finally:
            self._requests.pop(request_id, None)
            if self._session is not None:
                self._session.inflight.discard(request_id)

    async def _await_ready(self, session: _Session, reader: asyncio.Task[None]) -> bool:
        hello = asyncio.ensure_future(session.hello.wait())
        try:
            await asyncio.wait(
                {hello, reader}, timeout=self._open_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            hello.cancel()
            await asyncio.wait({hello})
        if session.hello.is_set():
            return True
        if not reader.done():
            logger.warning("client %s: no hello within %.1fs; closing", self.id, self._open_timeout)
            await session.close(CloseCode.HEARTBEAT_TIMEOUT, "no hello")
        return False

    def _cadence(self, session: _Session) -> tuple[float, float] | None:
        data = session.hello_data
        interval = _cadence_value(data.get("heartbeat_seconds"), 30.0)
        timeout = self._silence_timeout or _cadence_value(
            data.get("heartbeat_timeout_seconds"), 2 * interval
        )
        return self._heartbeat_interval or interval, timeout

    async def _ping(self, session: _Session) -> None:
        self._ping_seq += 1
        request_id = f"latency-{self.id}-{self._ping_seq}"
        self._pings[request_id] = asyncio.get_running_loop().time()
        while len(self._pings) > 8:  # unanswered pings: keep the last few only
            del self._pings[next(iter(self._pings))]
        await session.ws.send(encode_envelope({"type": PING, "data": {}, "request_id": request_id}))

    def _hand(self, mark: Mark) -> None:
        self._positions.hand(mark)

    async def _on_frame(self, session: _Session, frame: str | bytes) -> None:
        try:
            envelope, raw = decode_frame(frame)
        except EnvelopeError as exc:
            logger.warning("client %s: ignored an invalid frame (%s)", self.id, exc.code)
            return
        kind, request_id = envelope.type, envelope.request_id
        if kind == PING:
            pong: dict[str, Any] = {"type": PONG, "data": {}, "request_id": request_id}
            await session.ws.send(encode_envelope(pong))
            return
        if kind == PONG:
            sent = self._pings.pop(request_id or "", None)
            if sent is not None:
                self._latency = asyncio.get_running_loop().time() - sent
            return
        if kind == HELLO:
            session.hello_data = envelope.data if isinstance(envelope.data, dict) else {}
            session.hello.set()
            return
        answer = self._subs.answer(envelope)
        if answer is not None:
            await self._answered(answer, envelope)
        if kind == RECOVERY:
            notice = self._positions.recovery(envelope.data)
            if notice is not None:
                topic, recovered, position = notice
                hook = self._on_recovery
                await _call_hook(self, "on_recovery", hook, topic, recovered, envelope)
                self._hand_over(envelope, (topic, position))
        else:
            mark = self._positions.receive(raw)
            if mark is not None:
                envelope = StampedEnvelope.stamp(envelope, *mark)
            if kind == RESYNC and not self._claimable(request_id):
                await _call_hook(self, "on_resync", self._on_resync, envelope)
            self._hand_over(envelope, mark)

    def _hand_over(self, envelope: WSEnvelope, mark: Mark | None) -> None:
        """Give ``envelope`` to the ``request()`` waiting for it, else to the iterator."""
        request_id = envelope.request_id
        waiter = None if request_id is None else self._requests.get(request_id)
        if waiter is None or waiter.done():
            self._deliver(envelope, mark)
            return
        waiter.set_result(envelope)
        if mark is not None:
            self._positions.hand(mark)

    def _claimable(self, request_id: str | None) -> bool:
        waiter = None if request_id is None else self._requests.get(request_id)
        return waiter is not None and not waiter.done()


class RawWebSocketClient(_ReconnectingClient[str | bytes]):
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
        super().__init__(url, options)

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for ``str``, binary for ``bytes``); queued while offline."""
        if not isinstance(message, str | bytes):
            raise TypeError("message must be str or bytes")
        await self._send_frame(message)

    async def _on_frame(self, session: _Session, frame: str | bytes) -> None:
        self._deliver(frame)
