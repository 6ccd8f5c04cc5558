"""The reconnecting engine shared by both clients of ``tempest_ws.client``.

`_ReconnectingClient` holds what outlives a single connection: the lifecycle
(``connect``/``close``), the inbox behind ``async for``, the offline queue behind sends,
pending requests, and the background task that runs `_Connections`, the loop
that asks the policy of ``tempest_ws._backoff`` what to do after each disconnect, waits
out the delay and opens the next connection (served by ``tempest_ws._client_session``).
Subclasses fill in the hook methods at the end of the class. Requires the ``client``
extra (websockets).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tempest_ws._bounded import STOP_TIMEOUT, cancel_tasks
from tempest_ws.client._backoff import Action, Disconnect, OfflineQueue, ReconnectPolicy
from tempest_ws.client._history import Mark
from tempest_ws.client._options import ClientOptions, check_known, default_is_fatal, positive
from tempest_ws.client._session import _open_connection, _Session
from tempest_ws.exceptions import (
    ClientGaveUpError,
    ConfigurationError,
    ConnectionClosedError,
    MissingDependencyError,
    UnauthorizedError,
)
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import WSEnvelope

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = ["UrlSource", "_Connections", "_ReconnectingClient", "check_url"]

logger = logging.getLogger("tempest_ws.client")

M = TypeVar("M")

UrlSource = str | Callable[[], str | Awaitable[str]]
"""A fixed URL, or a function (plain or async) called before every connection attempt."""


def check_url(url: object) -> tuple[str, str]:
    """Return ``(url, safe_url)``; ``safe_url`` drops the query (it may hold a token).

    Raises:
        ConfigurationError: anything but a ``ws://`` or ``wss://`` URL with a host.
    """
    if isinstance(url, str):
        parts = urlsplit(url)
        if parts.scheme in ("ws", "wss") and parts.netloc:
            return url, urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    raise ConfigurationError("url must be ws://host[:port]/path or wss://...")


class _Connections:
    """``async for ws in _Connections(client)``: each new connection, backoff in between.

    The loop body serves a connection and stores how it ended in `last`; the next
    step asks the policy, waits out the delay, fetches a token and connects again. It
    ends when the application closed the client and raises `ClientGaveUpError`
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
            outcome = await _open_connection(client)
            if isinstance(outcome, Disconnect):
                self.last = outcome
                continue
            return outcome


class _ReconnectingClient(ABC, Generic[M]):
    """The connection engine shared by both clients; ``M`` is the message type."""

    def __init__(self, url: UrlSource, options: ClientOptions) -> None:
        self.id = uuid.uuid4().hex[:8]
        self._url_source = url
        if callable(url):
            self._url, self.safe_url = "", "<url function>"
        else:
            self._url, self.safe_url = check_url(url)
        check_known(options)
        self._options = options
        self._open_timeout = positive(options.get("open_timeout", 10.0), "open_timeout")
        self._close_timeout = positive(options.get("close_timeout", 5.0), "close_timeout")
        silence = options.get("silence_timeout")
        self._silence_timeout = None if silence is None else positive(silence, "silence_timeout")
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
        self._inbox: deque[tuple[M, Mark | None]] = deque()
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
        `ClientGaveUpError` if the client gives up first. Calling it again while
        running is harmless; after `close()` it raises ``ConnectionClosedError``.
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
            await session.close(code, reason, by_user=True)
        runner, current = self._runner, asyncio.current_task()
        own = {runner, *(session.tasks if session is not None else ())}
        if runner is not None and current not in own:
            if session is None:
                runner.cancel()  # connecting or waiting: nothing to lose
            done, _ = await asyncio.wait({runner}, timeout=self._close_timeout + 1.0)
            if not done:
                await cancel_tasks([runner], f"client {self.id} connection", limit=STOP_TIMEOUT)
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
        message, mark = self._inbox.popleft()
        if mark is not None:
            self._hand(mark)  # handed over now: the application's loop body runs next
        return message

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

    def _deliver(self, message: M, mark: Mark | None = None) -> None:
        """Queue ``message`` for the iterator; ``mark`` is its history position, if any."""
        if len(self._inbox) >= self._inbox_size:
            self._inbox.popleft()
            self._inbox_dropped += 1
            if self._inbox_dropped % 1000 == 1:
                logger.warning(
                    "client %s: application not reading; dropped %d received messages",
                    self.id,
                    self._inbox_dropped,
                )
        self._inbox.append((message, mark))
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

    async def _run(self) -> None:
        connections = _Connections(self)
        try:
            async for ws in connections:
                connections.last = await _Session(self, ws).serve()
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

    async def _resolve_url(self) -> None:
        """Call the URL function (if any) and make its answer the URL of the next attempt.

        Raises whatever the function raises, and ``ConfigurationError`` for a URL that
        is not ``ws``/``wss``.
        """
        source = self._url_source
        if not callable(source):
            return
        url = source()
        if inspect.isawaitable(url):
            url = await url
        self._url, self.safe_url = check_url(url)

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

    def _session_work(self, session: _Session) -> Coroutine[Any, Any, None] | None:
        """Work to run on ``session`` once it is ready, as one of its tasks (or ``None``)."""
        return None

    def _hand(self, mark: Mark) -> None:
        """A message carrying the history position ``mark`` was handed to the application."""

    @abstractmethod
    async def _on_frame(self, session: _Session, frame: str | bytes) -> None:
        """Handle one inbound frame of ``session`` (each client kind has its own)."""
