"""The envelope client: a reconnecting client for tempest_ws servers.

`WebSocketClient` speaks the envelope: it sends the token as the ``bearer``
subprotocol (asking the token provider again before every reconnect), answers ``ping``
envelopes, measures latency with its own pings, closes 4408 and reconnects when the
server stays silent past the deadline its ``hello`` announced, refreshes the token in
band before it expires, restores topic subscriptions, queues what is sent while offline
and correlates ``request()`` replies (validating them into a ``response_model`` when
asked to).

It is built from parts, each passed to the next one's constructor: the token keeper
(``_auth``), the dialer (``_dial``: URL, token, handshake), the envelope dialect
(``_dialect``: what each connection reads and answers), the engine (``_engine``:
lifecycle, reconnect loop, inbox, offline queue), the requester (``_requests``) and the
topics (``_topics``: subscriptions and built-in operations). The raw client is
``_raw``. Requires the ``client`` extra (websockets). Every task the client starts is
cancelled and awaited by `close()`; logs go to the ``tempest_ws.client`` logger and
never contain a token or a message body.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Unpack, overload

from tempest_ws.client._auth import AuthMode, TokenKeeper
from tempest_ws.client._backoff import OfflineQueue
from tempest_ws.client._dial import Dialer, UrlSource
from tempest_ws.client._dialect import EnvelopeDialect, EnvelopeHooks
from tempest_ws.client._engine import Engine
from tempest_ws.client._history import ClientPositions
from tempest_ws.client._inbox import Inbox
from tempest_ws.client._options import (
    ClientOptions,
    EnvelopeHook,
    RecoveryHook,
    SubscribeErrorHook,
    Timeouts,
    TokenProvider,
    build_policy,
    check_known,
    positive,
)
from tempest_ws.client._pending import PendingRequests
from tempest_ws.client._requests import ModelT, Requester, outbound_data, reply_into
from tempest_ws.client._subscriptions import Subscriptions
from tempest_ws.client._surface import ClientSurface
from tempest_ws.client._topics import Topics
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.wire._positions import Position
from tempest_ws.wire.envelope import WSEnvelope, encode_envelope

__all__ = ["WebSocketClient"]


class WebSocketClient(ClientSurface[WSEnvelope]):
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
        owner = uuid.uuid4().hex[:8]
        check_known(options)
        timeouts = Timeouts.of(options)
        requests = PendingRequests()
        tokens = TokenKeeper(
            token=token,
            provider=token_provider,
            auth=auth,
            refresh_margin=None
            if refresh_margin is None
            else positive(refresh_margin, "refresh_margin"),
            requests=requests,
            answer_timeout=timeouts.open,
            owner=owner,
        )
        dialer = Dialer(url, options, tokens, timeouts=timeouts, owner=owner)
        policy = build_policy(options)
        outbox: OfflineQueue[tuple[str | bytes, str | None]] = OfflineQueue(
            options.get("queue_size", 1000), options.get("queue_overflow", "drop_oldest")
        )
        interval = (
            None
            if heartbeat_interval is None
            else positive(heartbeat_interval, "heartbeat_interval")
        )
        inbox: Inbox[WSEnvelope] = Inbox(options.get("inbox_size", 10_000), owner=owner)
        subscriptions = Subscriptions(owner)
        self._positions = ClientPositions(owner, positions)
        self._tokens = tokens
        self._dialect = EnvelopeDialect(
            owner=owner,
            inbox=inbox,
            requests=requests,
            subscriptions=subscriptions,
            positions=self._positions,
            tokens=tokens,
            hooks=EnvelopeHooks(
                on_resync=on_resync,
                on_recovery=on_recovery,
                on_subscribe_error=on_subscribe_error,
            ),
            timeouts=timeouts,
            heartbeat_interval=interval,
        )
        engine: Engine[WSEnvelope] = Engine(
            owner=owner,
            dialer=dialer,
            policy=policy,
            dialect=self._dialect,
            inbox=inbox,
            outbox=outbox,
            requests=requests,
            timeouts=timeouts,
            on_connect=options.get("on_connect"),
            on_disconnect=options.get("on_disconnect"),
        )
        super().__init__(engine)
        self._requester = Requester(engine, requests)
        self._topics = Topics(
            engine=engine,
            requester=self._requester,
            requests=requests,
            subscriptions=subscriptions,
            positions=self._positions,
        )

    @property
    def latency(self) -> float | None:
        """Seconds of the last ping round-trip (``None`` before the first ``pong``)."""
        return self._dialect.latency

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
        session = self._engine.session
        value = None if session is None else session.hello_data.get("connection_id")
        return value if isinstance(value, str) else None

    @property
    def token_expires_at(self) -> float | None:
        """Wall-clock expiry (seconds since the epoch) of the token in use, as last read
        from its JWT ``exp`` or a refresh ``ack``; ``None`` when unknown or never."""
        return self._tokens.expires_at

    @property
    def subscriptions(self) -> frozenset[str]:
        """Topics subscribed with `subscribe()`, sent again after every reconnect."""
        return self._topics.topics

    async def send(self, type: str, data: Any = None) -> None:
        """Send ``{"type": type, "data": data}`` (``data`` defaults to ``{}``).

        ``data`` may be a pydantic model: it is sent as its JSON-mode dump, by alias.
        Written at once when connected; queued (in order) while disconnected or while
        older messages wait. Raises `SendQueueFullError` in ``"raise"`` overflow
        mode, ``ConnectionClosedError`` after `close()`, the give-up exception after
        the client gave up, ``TypeError`` for data JSON cannot encode.
        """
        body = {"type": type, "data": outbound_data(data)}
        await self._engine.send(encode_envelope(body))

    @overload
    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> WSEnvelope: ...

    @overload
    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
        response_model: type[ModelT],
    ) -> ModelT: ...

    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - the documented API, applied with asyncio.timeout
        response_model: type[ModelT] | None = None,
    ) -> WSEnvelope | ModelT:
        """Send an envelope with a fresh ``request_id``; return the first reply carrying it.

        ``data`` may be a pydantic model: it is sent as its JSON-mode dump, by alias.
        Without ``response_model`` the reply is returned whatever its ``type`` (an
        ``error`` envelope included). With one, the reply's ``data`` is validated into
        that pydantic model and the model is returned: an ``error`` reply raises
        `RequestError` (its ``code``, ``reason``, ``data`` and ``request_id`` are the
        server's), and a reply whose ``data`` does not validate raises `RequestError`
        with the code ``"invalid_answer"`` (pydantic's ``ValidationError`` is its
        ``__cause__``). An ``ack`` (a handler that returned nothing) validates its
        ``data``, ``{}``, so a model whose fields all have defaults accepts it.

        The reply is not yielded by the iterator. ``timeout`` covers queueing and
        waiting: when it expires the request is removed from the offline queue if still
        there and `RequestTimeoutError` is raised. If the connection drops after the
        request was written, ``ConnectionClosedError`` is raised at once.
        """
        reply = await self._requester.ask(type, data, timeout=timeout)
        return reply if response_model is None else reply_into(reply, response_model)

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
        await self._topics.subscribe(topic, confirm=confirm, timeout=timeout)

    async def unsubscribe(self, topic: str) -> None:
        """Forget ``topic`` and its position and, when connected, send ``unsubscribe``.

        Subscribing again later starts fresh: the server answers ``recovered: false``
        with the topic's current position, and the application reloads the topic.
        """
        await self._topics.unsubscribe(topic)

    async def presence(self, topic: str, *, timeout: float = 10.0) -> set[str]:  # noqa: ASYNC109
        """The user ids present in ``topic`` (``presence.get``), as strings.

        The connection must be subscribed to ``topic``. Raises `RequestError`
        (``not_subscribed``, ``presence_disabled``, ``unavailable``, ``invalid_data``),
        [`RequestTimeoutError`][tempest_ws.exceptions.RequestTimeoutError], or what ``request()``
        raises; a malformed ``ack`` raises `RequestError` with code
        ``invalid_answer``.
        """
        return await self._topics.presence(topic, timeout=timeout)

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
        await self._topics.typing(topic, typing, timeout=timeout)

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
        await self._topics.receipt(topic, message_id, status, timeout=timeout)
