"""A reconnecting WebSocket client for tempest_ws servers, and a raw mode for any server.

:class:`WebSocketClient` speaks the envelope: it sends the token as the ``bearer``
subprotocol (asking the token provider again before every reconnect), answers ``ping``
envelopes, measures latency with its own pings, closes 4408 and reconnects when the
server stays silent past the deadline its ``hello`` announced, restores topic
subscriptions, queues what is sent while offline and correlates ``request()`` replies.
:class:`RawWebSocketClient` keeps the reconnection and drops the envelope.

Between connections the pure logic of ``tempest_ws._backoff`` decides (jittered
exponential backoff, policy by close code). Requires the ``client`` extra (websockets).
Every task the client starts is cancelled and awaited by :meth:`close`; logs go to the
``tempest_ws.client`` logger and never contain a token or a message body.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import re
import ssl
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Generic, Literal, Self, TypedDict, TypeVar, Unpack
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._backoff import (
    Action,
    Backoff,
    Disconnect,
    OfflineQueue,
    Overflow,
    ReconnectPolicy,
    SendQueueFullError,
)
from .auth import BEARER_SUBPROTOCOL
from .codes import CLOSE_CODE_INFO, CloseCode
from .envelope import HELLO, PING, PONG, RESYNC, WSEnvelope, decode_envelope, encode_envelope
from .exceptions import (
    ConfigurationError,
    ConnectionClosedError,
    EnvelopeError,
    MissingDependencyError,
    TempestWSError,
)
from .heartbeat import HeartbeatAction, Liveness

try:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import (
        ConnectionClosed,
        InvalidMessage,
        InvalidStatus,
        WebSocketException,
    )
    from websockets.typing import Origin, Subprotocol
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = [
    "Backoff",
    "ClientGaveUpError",
    "ClientOptions",
    "Disconnect",
    "RawWebSocketClient",
    "RequestTimeoutError",
    "SendQueueFullError",
    "UnauthorizedError",
    "WebSocketClient",
    "default_is_fatal",
]

logger = logging.getLogger("tempest_ws.client")

M = TypeVar("M")
Hook = Callable[[], Awaitable[None] | None]
DisconnectHook = Callable[[Disconnect], Awaitable[None] | None]
EnvelopeHook = Callable[[WSEnvelope], Awaitable[None] | None]
TokenProvider = Callable[[], Awaitable[str]]

_RETRY_STATUSES = frozenset({401, 408, 429, 500, 502, 503, 504})
_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 7230 token: subprotocol-safe
_MAX_CADENCE = 86_400.0


class ClientGaveUpError(TempestWSError, ConnectionError):
    """The client stopped reconnecting; ``disconnect`` says what happened last."""

    def __init__(self, reason: str, *, disconnect: Disconnect | None = None) -> None:
        code: CloseCode | None = None
        if disconnect is not None and disconnect.code is not None:
            with contextlib.suppress(ValueError):
                code = CloseCode(disconnect.code)
        super().__init__(reason, code=code)
        self.disconnect = disconnect

    def __str__(self) -> str:
        return self.reason  # it already names the close code


class UnauthorizedError(ClientGaveUpError):
    """The server refused the token ``max_unauthorized`` times in a row (4401 or HTTP 401)."""


class RequestTimeoutError(TempestWSError, TimeoutError):
    """No envelope with the request's ``request_id`` arrived within the timeout."""


def default_is_fatal(disconnect: Disconnect) -> bool:
    """The default ``is_fatal`` hook: True when reconnecting cannot help.

    Fatal: close codes :data:`~tempest_ws.codes.CLOSE_CODE_INFO` marks as not worth a
    reconnect (such as 1003, 1008, 4403; 1000 from the server is not), handshake refusals
    other than HTTP 401/408/429/5xx, and errors other than network errors (a bad URL, a
    token that cannot be sent). A raising token provider is retried.
    """
    if disconnect.code is not None:
        try:
            info = CLOSE_CODE_INFO[CloseCode(disconnect.code)]
        except (ValueError, KeyError):
            return False  # an application's own code: reconnect unless the hook says no
        return not info.reconnect and disconnect.code != CloseCode.NORMAL
    if disconnect.http_status is not None:
        return disconnect.http_status not in _RETRY_STATUSES
    error = disconnect.error
    if isinstance(error, ssl.SSLCertVerificationError):
        return True  # an OSError, but retrying will not make the certificate valid
    if error is None or disconnect.stage == "token" or isinstance(error, OSError | TimeoutError):
        return False
    return not (isinstance(error, InvalidMessage) and isinstance(error.__cause__, EOFError))


class ClientOptions(TypedDict, total=False):
    """Options shared by :class:`WebSocketClient` and :class:`RawWebSocketClient`.

    Attributes:
        headers: extra HTTP headers for the handshake.
        subprotocols: subprotocols to offer (after ``bearer, <token>`` in envelope mode).
        origin: the ``Origin`` header, for servers with an origin allow-list.
        max_size: largest inbound message in bytes (``None``: no limit); default 1 MiB.
            A larger one closes the connection 1009, then the client reconnects.
        open_timeout: seconds for TCP + handshake (and, in envelope mode, the ``hello``).
        close_timeout: seconds to wait for the peer's close frame.
        keepalive: interval of websockets' protocol-level pings (``None``: off).
        connect_options: more keyword arguments for ``websockets.asyncio.client.connect``
            (``ssl``, ``compression``, ``proxy``...).
        backoff: delays between attempts (default ``Backoff(0.5, 30, 2)``).
        long_backoff: delays after 4429, 1013, HTTP 429/503 (default ``Backoff(5, 120, 2)``).
        max_unauthorized: consecutive 4401s before :class:`UnauthorizedError` (default 3).
        max_retries: consecutive failed attempts before :class:`ClientGaveUpError`
            (default ``None``: never give up).
        min_uptime: seconds a connection must last to reset the backoff (default 5).
        is_fatal: ``(Disconnect) -> bool``; true stops the client (default
            :func:`default_is_fatal`).
        rng: the ``random.Random`` behind the jitter (seed it in tests).
        queue_size: messages kept while disconnected (default 1000).
        queue_overflow: ``"drop_oldest"`` (default; logs a warning) or ``"raise"``
            (:class:`SendQueueFullError`).
        inbox_size: received messages kept for ``async for``; when the application does
            not keep up the oldest is dropped with a warning (default 10000).
        silence_timeout: seconds without any inbound frame after which the client closes
            4408 and reconnects (envelope default: the ``hello``'s
            ``heartbeat_timeout_seconds``; raw default: off).
        on_connect: ``()`` hook, run each time a connection is ready.
        on_disconnect: ``(Disconnect)`` hook, run each time an open connection ends.
    """

    headers: Mapping[str, str]
    subprotocols: Sequence[str]
    origin: str
    max_size: int | None
    open_timeout: float
    close_timeout: float
    keepalive: float | None
    connect_options: Mapping[str, Any]
    backoff: Backoff
    long_backoff: Backoff
    max_unauthorized: int
    max_retries: int | None
    min_uptime: float
    is_fatal: Callable[[Disconnect], bool]
    rng: random.Random
    queue_size: int
    queue_overflow: Overflow
    inbox_size: int
    silence_timeout: float | None
    on_connect: Hook
    on_disconnect: DisconnectHook


class _QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets logs handshake headers and frame contents at DEBUG: never enable it."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WIRE_LOGGER = _QuietLogger(logging.getLogger("websockets.client"), {})


class _Session:
    """One open connection and what the client learnt about it."""

    def __init__(self, ws: ClientConnection, opened_at: float) -> None:
        self.ws = ws
        self.opened_at = opened_at
        self.hello = asyncio.Event()
        self.hello_data: Mapping[str, Any] = {}
        self.ready = False
        self.established = False
        self.local_close: int | None = None
        self.local_reason = ""
        self.by_user = False
        self.liveness: Liveness | None = None
        self.inflight: set[str] = set()
        self.tasks: list[asyncio.Task[None]] = []


class _Connections:
    """``async for ws in _Connections(client)``: each new connection, backoff in between.

    The loop body serves a connection and stores how it ended in :attr:`last`; the next
    step asks the policy, waits out the delay, fetches a token and connects again. It
    ends when the application closed the client and raises :class:`ClientGaveUpError`
    when the policy gives up.
    """

    def __init__(self, client: _ReconnectingClient[Any]) -> None:
        self._client = client
        self.last: Disconnect | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ClientConnection:
        client = self._client
        while True:  # one turn per attempt; the policy bounds the failures
            if client._stopping:
                raise StopAsyncIteration
            last, self.last = self.last, None
            if last is not None:
                decision = client._policy.decide(last)
                if decision.action is Action.STOP:
                    raise StopAsyncIteration
                if decision.action is Action.GIVE_UP:
                    kind = UnauthorizedError if decision.unauthorized else ClientGaveUpError
                    raise kind(decision.why, disconnect=last)
                logger.info(
                    "client %s: %s; reconnecting in %.2fs", client.id, decision.why, decision.delay
                )
                await client._pause(decision.delay)
            if client._stopping:
                raise StopAsyncIteration
            outcome = await client._attempt()
            if isinstance(outcome, Disconnect):
                self.last = outcome
                continue
            return outcome


class _ReconnectingClient(Generic[M]):
    """The connection engine shared by both clients; ``M`` is the message type."""

    def __init__(self, url: str, options: ClientOptions) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ConfigurationError("url must be ws://host[:port]/path or wss://...")
        self.id = uuid.uuid4().hex[:8]
        self._url = url
        self.safe_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        unknown = sorted(set(options) - set(ClientOptions.__optional_keys__))
        if unknown:
            raise ConfigurationError(f"unknown client option(s): {', '.join(unknown)}")
        self._options = options
        self._open_timeout = _positive(options.get("open_timeout", 10.0), "open_timeout")
        self._close_timeout = _positive(options.get("close_timeout", 5.0), "close_timeout")
        silence = options.get("silence_timeout")
        self._silence_timeout = None if silence is None else _positive(silence, "silence_timeout")
        self._policy = ReconnectPolicy(
            is_fatal=options.get("is_fatal", default_is_fatal),
            backoff=options.get("backoff"),
            long_backoff=options.get("long_backoff"),
            max_unauthorized=options.get("max_unauthorized", 3),
            max_retries=options.get("max_retries"),
            min_uptime=options.get("min_uptime", 5.0),
            rng=options.get("rng"),
        )
        self._outbox: OfflineQueue[tuple[str | bytes, str | None]] = OfflineQueue(
            options.get("queue_size", 1000), options.get("queue_overflow", "drop_oldest")
        )
        self._inbox: deque[M] = deque()
        self._inbox_size = max(1, options.get("inbox_size", 10_000))
        self._inbox_dropped = 0
        self._requests: dict[str, asyncio.Future[WSEnvelope]] = {}
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._session: _Session | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._finished = False
        self._failure: ClientGaveUpError | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection is open and ready (queue flushed, state restored)."""
        return self._session is not None and self._session.ready

    async def connect(self, *, wait: bool = True) -> None:
        """Start connecting (and reconnecting) in the background.

        With ``wait`` (the default) return once the first connection is ready; raises
        :class:`ClientGaveUpError` if the client gives up first. Calling it again while
        running is harmless; after :meth:`close` it raises ``ConnectionClosedError``.
        """
        if self._stopping:
            raise ConnectionClosedError("client is closed", code=CloseCode.NORMAL)
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"tempest_ws client {self.id}")
        if wait:
            await self.wait_connected()

    async def wait_connected(self) -> None:
        """Wait until a connection is ready; raise if the client gave up or was closed."""
        while not self.connected:  # wakes on every state change
            self._raise_if_stopped(started_only=True)
            await self._changed.wait()

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection with ``code`` and stop reconnecting; idempotent.

        Cancels and awaits every task the client started. Messages still in the offline
        queue are dropped (with a warning); pending requests fail with
        ``ConnectionClosedError``; ``async for`` ends after the received messages.
        Safe to call from a hook.
        """
        self._stopping = True
        self._stop_event.set()
        session = self._session
        if session is not None and session.local_close is None:
            await self._close_session(session, code, reason, by_user=True)
        runner, current = self._runner, asyncio.current_task()
        own = {runner, *(session.tasks if session is not None else ())}
        if runner is not None and current not in own:
            if session is None:
                runner.cancel()  # connecting or waiting: nothing to lose
            done, _ = await asyncio.wait({runner}, timeout=self._close_timeout + 1.0)
            if not done:
                runner.cancel()
                await asyncio.wait({runner})
        dropped = self._outbox.clear()
        if dropped:
            logger.warning("client %s: closed with %d unsent messages dropped", self.id, dropped)
        self._finish()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- receiving -------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> M:
        while not self._inbox:  # wakes on every delivery and state change
            if self._finished:
                if self._failure is not None:
                    raise self._failure.with_traceback(None)
                raise StopAsyncIteration
            if self._runner is None:
                raise ConnectionClosedError("client not started: use 'async with' or connect()")
            await self._changed.wait()
        return self._inbox.popleft()

    async def receive(self) -> M:
        """The next message; ``ConnectionClosedError`` once the client is closed."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise ConnectionClosedError("client is closed", code=CloseCode.NORMAL) from None

    # -- internals -------------------------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _raise_if_stopped(self, *, started_only: bool) -> None:
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        if self._stopping or self._finished:
            raise ConnectionClosedError("client is closed", code=CloseCode.NORMAL)
        if started_only and self._runner is None:
            raise ConnectionClosedError("client not started: use 'async with' or connect()")

    def _deliver(self, message: M) -> None:
        if len(self._inbox) >= self._inbox_size:
            self._inbox.popleft()
            self._inbox_dropped += 1
            if self._inbox_dropped % 1000 == 1:
                logger.warning(
                    "client %s: application not reading; dropped %d received messages",
                    self.id,
                    self._inbox_dropped,
                )
        self._inbox.append(message)
        self._notify()

    async def _send_frame(self, frame: str | bytes, request_id: str | None = None) -> None:
        """Write now when ready with nothing queued before it; otherwise queue it."""
        if self._failure is not None or self._stopping:
            self._raise_if_stopped(started_only=False)
        item = (frame, request_id)
        if not self.connected or len(self._outbox):
            self._outbox.put(item)
            return
        async with self._send_lock:
            session = self._session
            if session is None or not session.ready or len(self._outbox):
                self._outbox.put(item)
                return
            if request_id is not None:
                session.inflight.add(request_id)
            try:
                await session.ws.send(frame)
            except ConnectionClosed:
                session.inflight.discard(request_id or "")
                self._outbox.put(item)  # the connection dropped under it: send it again

    async def _pause(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._stop_event.wait()
        except TimeoutError:
            pass

    async def _attempt(self) -> ClientConnection | Disconnect:
        try:
            token = await self._get_token()
        except Exception as exc:  # noqa: BLE001 - the application's provider: retried
            logger.warning("client %s: token provider raised %s", self.id, type(exc).__name__)
            return Disconnect(error=exc, stage="token")
        try:
            url, protocols, headers = self._handshake(token)
            origin = self._options.get("origin")
            keepalive = self._options.get("keepalive", 20.0)
            ws = await connect(
                url,
                subprotocols=[Subprotocol(p) for p in protocols] or None,
                additional_headers=headers or None,
                origin=Origin(origin) if origin else None,
                max_size=self._options.get("max_size", 2**20),
                open_timeout=self._open_timeout,
                close_timeout=self._close_timeout,
                ping_interval=keepalive,
                ping_timeout=keepalive,
                logger=_WIRE_LOGGER,
                **self._options.get("connect_options", {}),
            )
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
            logger.debug(
                "client %s: connecting to %s failed: %s",
                self.id,
                self.safe_url,
                f"HTTP {status}" if status else type(exc).__name__,
            )
            return Disconnect(error=exc, http_status=status, stage="connect")
        logger.debug("client %s: handshake with %s done", self.id, self.safe_url)
        return ws

    async def _run(self) -> None:
        connections = _Connections(self)
        try:
            async for ws in connections:
                connections.last = await self._serve(ws)
        except ClientGaveUpError as exc:
            logger.error("client %s: giving up: %s", self.id, exc)
            self._failure = exc
        except Exception as exc:  # task boundary: surface the bug to the application
            logger.exception("client %s: reconnect loop failed", self.id)
            self._failure = ClientGaveUpError(f"client failed: {type(exc).__name__}")
            self._failure.__cause__ = exc
        finally:
            self._finish()

    def _finish(self) -> None:
        self._finished = True
        error = self._failure or ConnectionClosedError("client is closed", code=CloseCode.NORMAL)
        for waiter in self._requests.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._notify()

    def _spawn(self, session: _Session, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=f"tempest_ws client {self.id} {name}")
        session.tasks.append(task)

    async def _serve(self, ws: ClientConnection) -> Disconnect:
        loop = asyncio.get_running_loop()
        session = _Session(ws, loop.time())
        self._session = session
        self._spawn(session, self._read_loop(session), "reader")
        reader = session.tasks[0]
        try:
            if self._stopping:
                await self._close_session(session, CloseCode.NORMAL, "", by_user=True)
            elif await self._await_ready(session, reader):
                session.established = True
                cadence = self._cadence(session)
                if cadence is not None:
                    self._spawn(session, self._watch(session, *cadence), "watchdog")
                if await self._restore(session):
                    logger.info("client %s: connected to %s", self.id, self.safe_url)
                    self._notify()
                    await _call_hook(self, "on_connect", self._options.get("on_connect"))
            await asyncio.wait({reader})
        finally:
            self._session = None
            for task in session.tasks:
                task.cancel()
            await asyncio.wait(session.tasks)
            for task in session.tasks:
                if not task.cancelled() and task.exception() is not None:
                    logger.error("client %s: task died", self.id, exc_info=task.exception())
            await ws.close()
        # The peer's close frame; else the one websockets sent itself (1009 for an
        # oversized message, 1011 for a keepalive timeout); else the TCP connection dropped.
        frame = ws.protocol.close_rcvd or ws.protocol.close_sent
        code = session.local_close
        if code is None:
            code = frame.code if frame is not None else CloseCode.ABNORMAL
        disconnect = Disconnect(
            code=code,
            reason=session.local_reason or (frame.reason if frame is not None else ""),
            by_user=session.by_user,
            established=session.established,
            uptime=loop.time() - session.opened_at,
        )
        for request_id in session.inflight:
            waiter = self._requests.get(request_id)
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    ConnectionClosedError(
                        f"connection lost before a reply: {disconnect.describe()}"
                    )
                )
        self._notify()
        await _call_hook(self, "on_disconnect", self._options.get("on_disconnect"), disconnect)
        return disconnect

    async def _read_loop(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for frame in session.ws:
                if session.liveness is not None:
                    session.liveness.touch(loop.time())
                await self._on_frame(session, frame)
        except ConnectionClosed:
            pass
        except Exception:  # task boundary: a bug here must not leave a half-dead socket
            logger.exception("client %s: failed on an inbound frame; closing", self.id)
            await self._close_session(session, CloseCode.INTERNAL_ERROR, "client error")

    async def _watch(self, session: _Session, interval: float, silence: float) -> None:
        """Ping on the cadence; close 4408 once nothing arrived for ``silence`` seconds."""
        loop = asyncio.get_running_loop()
        live = Liveness.starting_at(loop.time(), interval=interval, timeout=silence)
        session.liveness = live
        try:
            await self._ping(session)
            while True:  # one turn per deadline; ends with the timeout or the socket
                await asyncio.sleep(max(0.0, live.next_deadline() - loop.time()))
                now = loop.time()
                action = live.check(now)
                if action is HeartbeatAction.TIMEOUT:
                    logger.warning(
                        "client %s: server silent for %.1fs; closing and reconnecting",
                        self.id,
                        silence,
                    )
                    await self._close_session(session, CloseCode.HEARTBEAT_TIMEOUT, "silent")
                    return
                if action is HeartbeatAction.PING:
                    live.last_ping = now
                    await self._ping(session)
        except ConnectionClosed:
            pass

    async def _restore(self, session: _Session) -> bool:
        """Restore state and flush the offline queue in order, then mark the session ready."""
        try:
            async with self._send_lock:
                await self._resend_state(session)
                while len(self._outbox):
                    frame, request_id = item = self._outbox.pop()
                    if request_id is not None:
                        session.inflight.add(request_id)
                    try:
                        await session.ws.send(frame)
                    except ConnectionClosed:
                        self._outbox.requeue(item)
                        raise
                session.ready = True
        except ConnectionClosed:
            return False
        return True

    async def _close_session(
        self, session: _Session, code: int, reason: str, *, by_user: bool = False
    ) -> None:
        if session.local_close is None:
            session.local_close, session.local_reason, session.by_user = int(code), reason, by_user
        await session.ws.close(code, reason)

    # -- what the two clients do differently ------------------------------------------

    async def _get_token(self) -> str | None:
        return None

    def _handshake(self, token: str | None) -> tuple[str, list[str], dict[str, str]]:
        return (
            self._url,
            list(self._options.get("subprotocols", ())),
            dict(self._options.get("headers", {})),
        )

    async def _await_ready(self, session: _Session, reader: asyncio.Task[None]) -> bool:
        return True

    def _cadence(self, session: _Session) -> tuple[float, float] | None:
        timeout = self._silence_timeout
        return (math.inf, timeout) if timeout else None

    async def _ping(self, session: _Session) -> None:
        return None

    async def _resend_state(self, session: _Session) -> None:
        return None

    async def _on_frame(self, session: _Session, frame: str | bytes) -> None:
        raise NotImplementedError


async def _call_hook(
    client: _ReconnectingClient[Any], name: str, hook: Callable[..., Any] | None, *args: Any
) -> None:
    """Run an application hook (sync or async); its exception is logged, never raised."""
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:  # the application's code: log it and carry on
        logger.exception("client %s: %s hook raised", client.id, name)


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds")
    return value


def _cadence_value(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return min(float(value), _MAX_CADENCE)
    return default


def _with_query_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


class WebSocketClient(_ReconnectingClient[WSEnvelope]):
    """A reconnecting client for a tempest_ws endpoint; ``async for`` yields envelopes.

    Args:
        url: ``ws://`` or ``wss://`` URL of the endpoint (a query token is never logged).
        token: a fixed bearer token.
        token_provider: ``async () -> str``, awaited before every connection attempt, so
            a 4401 (expired token) is followed by a fresh one. Exclusive with ``token``.
        auth: how the token travels: ``"subprotocol"`` (``bearer, <token>``, the
            default), ``"header"`` (``Authorization: Bearer``) or ``"query"``
            (``?token=``).
        heartbeat_interval: seconds between the client's own ``ping`` envelopes, whose
            ``pong`` replies feed :attr:`latency` (default: the ``hello``'s
            ``heartbeat_seconds``).
        on_resync: ``(envelope)`` hook for a ``resync`` envelope (which is also yielded).
        **options: the :class:`ClientOptions`.

    The iterator never yields ``hello``, ``ping``, ``pong`` or replies claimed by
    :meth:`request`. A connection counts as ready once the ``hello`` arrived (within
    ``open_timeout``, else it is closed 4408 and retried), the subscriptions were sent
    again and the offline queue was flushed, in that order.

    Raises:
        ConfigurationError: both ``token`` and ``token_provider``, an unknown ``auth``,
            a URL that is not ``ws``/``wss`` or an invalid option.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        auth: Literal["subprotocol", "header", "query"] = "subprotocol",
        heartbeat_interval: float | None = None,
        on_resync: EnvelopeHook | None = None,
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
            else _positive(heartbeat_interval, "heartbeat_interval")
        )
        self._on_resync = on_resync
        self._topics: dict[str, None] = {}
        self._pings: dict[str, float] = {}
        self._ping_seq = 0
        self._latency: float | None = None

    @property
    def latency(self) -> float | None:
        """Seconds of the last ping round-trip (``None`` before the first ``pong``)."""
        return self._latency

    @property
    def subscriptions(self) -> frozenset[str]:
        """Topics subscribed with :meth:`subscribe`, sent again after every reconnect."""
        return frozenset(self._topics)

    async def send(self, type: str, data: Any = None) -> None:
        """Send ``{"type": type, "data": data}`` (``data`` defaults to ``{}``).

        Written at once when connected; queued (in order) while disconnected or while
        older messages wait. Raises :class:`SendQueueFullError` in ``"raise"`` overflow
        mode, ``ConnectionClosedError`` after :meth:`close`, the give-up exception after
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
        :class:`RequestTimeoutError` is raised. If the connection drops after the
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

    async def subscribe(self, topic: str) -> None:
        """Send ``{"type": "subscribe", "data": {"topic": topic}}`` and remember the topic.

        While disconnected nothing is queued: every remembered topic is sent again first
        thing on each new connection. Subscribing twice sends once.
        """
        await self._topic_change(topic, add=True)

    async def unsubscribe(self, topic: str) -> None:
        """Forget ``topic`` and, when connected, send ``unsubscribe`` for it."""
        await self._topic_change(topic, add=False)

    async def _topic_change(self, topic: str, *, add: bool) -> None:
        self._raise_if_stopped(started_only=False)
        async with self._send_lock:
            if (topic in self._topics) == add:
                return
            if add:
                self._topics[topic] = None
            else:
                del self._topics[topic]
            session = self._session
            if session is not None and session.ready:
                kind = "subscribe" if add else "unsubscribe"
                frame = encode_envelope({"type": kind, "data": {"topic": topic}})
                with contextlib.suppress(ConnectionClosed):  # the next connection restores it
                    await session.ws.send(frame)

    async def _get_token(self) -> str | None:
        if self._token_provider is not None:
            return await self._token_provider()
        return self._token

    def _handshake(self, token: str | None) -> tuple[str, list[str], dict[str, str]]:
        url, protocols, headers = super()._handshake(token)
        if token is None:
            return url, protocols, headers
        if not isinstance(token, str) or not token:
            raise ConfigurationError("the token provider must return a non-empty str")
        if self._auth == "subprotocol":
            if not _TOKEN_CHARS.fullmatch(token):
                raise ConfigurationError("token has characters a subprotocol cannot carry")
            protocols = [BEARER_SUBPROTOCOL, token, *protocols]
        elif self._auth == "header":
            headers["Authorization"] = f"Bearer {token}"
        else:
            url = _with_query_token(url, token)
        return url, protocols, headers

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
            await self._close_session(session, CloseCode.HEARTBEAT_TIMEOUT, "no hello")
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

    async def _resend_state(self, session: _Session) -> None:
        for topic in list(self._topics):
            await session.ws.send(encode_envelope({"type": "subscribe", "data": {"topic": topic}}))

    async def _on_frame(self, session: _Session, frame: str | bytes) -> None:
        try:
            envelope = decode_envelope(frame)
        except EnvelopeError as exc:
            logger.warning("client %s: ignored an invalid frame (%s)", self.id, exc.code)
            return
        kind, request_id = envelope.type, envelope.request_id
        if kind == PING:
            pong: dict[str, Any] = {"type": PONG, "data": {}, "request_id": request_id}
            await session.ws.send(encode_envelope(pong))
        elif kind == PONG:
            sent = self._pings.pop(request_id or "", None)
            if sent is not None:
                self._latency = asyncio.get_running_loop().time() - sent
        elif kind == HELLO:
            session.hello_data = envelope.data if isinstance(envelope.data, dict) else {}
            session.hello.set()
        elif request_id is None or not self._claim_reply(request_id, envelope):
            if kind == RESYNC:
                await _call_hook(self, "on_resync", self._on_resync, envelope)
            self._deliver(envelope)

    def _claim_reply(self, request_id: str, envelope: WSEnvelope) -> bool:
        waiter = self._requests.get(request_id)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(envelope)
        return True


class RawWebSocketClient(_ReconnectingClient[str | bytes]):
    """The reconnecting engine for any WebSocket server, without the envelope.

    ``async for`` yields ``str`` for text frames and ``bytes`` for binary frames;
    :meth:`send` sends a ``str`` as text and ``bytes`` as binary. Headers,
    subprotocols, ``max_size``, backoff, the close-code policy, the offline queue and the
    hooks work as for :class:`WebSocketClient` (see :class:`ClientOptions`); there is no
    token, no ``hello`` and no subscription. Silence detection is off unless
    ``silence_timeout`` is given (websockets' protocol pings still run, see ``keepalive``).
    """

    def __init__(self, url: str, **options: Unpack[ClientOptions]) -> None:
        super().__init__(url, options)

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for ``str``, binary for ``bytes``); queued while offline."""
        if not isinstance(message, str | bytes):
            raise TypeError("message must be str or bytes")
        await self._send_frame(message)

    async def _on_frame(self, session: _Session, frame: str | bytes) -> None:
        self._deliver(frame)
