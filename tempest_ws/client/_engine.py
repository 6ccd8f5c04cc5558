"""The reconnecting engine both clients of ``tempest_ws.client`` are built on.

An `Engine` holds what outlives a single connection: the lifecycle
(``connect``/``close``), the [`Inbox`][tempest_ws.client._inbox.Inbox] behind
``async for``, the offline queue behind sends, and the background task that takes each
new connection from [`Connections`][tempest_ws.client._reconnect.Connections] and
serves it as a [`Session`][tempest_ws.client._session.Session], in this order: wait
until the `Dialect` calls it ready, start the watchdog, send the state again and flush
the offline queue, start the dialect's session work, run ``on_connect``; then, once it
closed, fail the requests written on it and run ``on_disconnect``. What the envelope
and the raw client do differently is their `Dialect`, passed in. Requires the
``client`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from tempest_ws._bounded import STOP_TIMEOUT, cancel_tasks
from tempest_ws.client._backoff import OfflineQueue, ReconnectPolicy
from tempest_ws.client._dial import Dialer
from tempest_ws.client._disconnect import Disconnect
from tempest_ws.client._history import Mark
from tempest_ws.client._inbox import Inbox
from tempest_ws.client._options import DisconnectHook, Hook, Timeouts
from tempest_ws.client._pending import PendingRequests
from tempest_ws.client._reconnect import Connections
from tempest_ws.client._session import FrameHandler, Session, call_hook
from tempest_ws.exceptions import ClientGaveUpError, ConnectionClosedError, MissingDependencyError
from tempest_ws.wire.codes import CloseCode

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = ["Dialect", "Engine", "Outbox"]

logger = logging.getLogger("tempest_ws.client")

M = TypeVar("M")

Outbox = OfflineQueue[tuple[str | bytes, str | None]]
"""The offline queue: ``(frame, request_id)`` pairs (``None`` for a plain send)."""


class Dialect(FrameHandler, Protocol):
    """What a client kind adds to a connection, on top of reading frames and pinging."""

    async def await_ready(self, session: Session, reader: asyncio.Task[None]) -> bool:
        """Whether ``session`` became usable before ``reader`` ended (or a deadline)."""

    def cadence(self, session: Session) -> tuple[float, float] | None:
        """``(ping interval, silence timeout)`` for the watchdog; ``None``: no watchdog."""

    async def resend_state(self, session: Session) -> None:
        """Send what a new connection needs first (subscriptions), before the queue."""

    def session_work(self, session: Session) -> Coroutine[Any, Any, None] | None:
        """Work to run on ``session`` once it is ready, as one of its tasks (or ``None``)."""

    def hand(self, mark: Mark) -> None:
        """A message carrying the history position ``mark`` was handed to the application."""


class Engine(Generic[M]):
    """Connection, reconnection, inbox and offline queue of one client (``M``: messages)."""

    def __init__(
        self,
        *,
        owner: str,
        dialer: Dialer,
        policy: ReconnectPolicy,
        dialect: Dialect,
        inbox: Inbox[M],
        outbox: Outbox,
        requests: PendingRequests,
        timeouts: Timeouts,
        on_connect: Hook | None = None,
        on_disconnect: DisconnectHook | None = None,
    ) -> None:
        self.id = owner
        self._dialer = dialer
        self._policy = policy
        self._dialect = dialect
        self._inbox = inbox
        self._outbox = outbox
        self._requests = requests
        self._timeouts = timeouts
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._send_lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._session: Session | None = None
        self._runner: asyncio.Task[None] | None = None
        self._finished = False
        self._failure: ClientGaveUpError | None = None

    @property
    def safe_url(self) -> str:
        """The URL of the last attempt, without its query string."""
        return self._dialer.safe_url

    @property
    def session(self) -> Session | None:
        """The connection being served (ready or not), ``None`` between connections."""
        return self._session

    @property
    def connected(self) -> bool:
        """True while a connection is open and ready (queue flushed, state restored)."""
        return self._session is not None and self._session.ready

    @property
    def failure(self) -> ClientGaveUpError | None:
        """Why the client gave up, once it did."""
        return self._failure

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self, *, wait: bool = True) -> None:
        """Start the background task; with ``wait``, return once a connection is ready."""
        if self._stopped.is_set():
            raise ConnectionClosedError("client is closed", code=CloseCode.NORMAL)
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"tempest_ws client {self.id}")
        if wait:
            await self.wait_connected()

    async def wait_connected(self) -> None:
        """Wait until a connection is ready; raise if the client gave up or was closed."""
        while not self.connected:  # wakes on every state change
            self.check_open(started_only=True)
            await self._inbox.changed()

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close with ``code``, stop reconnecting, cancel and await every task; idempotent."""
        self._stopped.set()
        session = self._session
        if session is not None and session.local_close is None:
            await session.close(code, reason, by_user=True)
        runner, current = self._runner, asyncio.current_task()
        own = {runner, *(session.tasks if session is not None else ())}
        if runner is not None and current not in own:
            if session is None:
                runner.cancel()  # connecting or waiting: nothing to lose
            done, _ = await asyncio.wait({runner}, timeout=self._timeouts.close + 1.0)
            if not done:
                await cancel_tasks([runner], f"client {self.id} connection", limit=STOP_TIMEOUT)
        dropped = self._outbox.clear()
        if dropped:
            logger.warning("client %s: closed with %d unsent messages dropped", self.id, dropped)
        self._finish()

    async def next(self) -> M:
        """The next received message; ``StopAsyncIteration`` once the client ended."""
        while not len(self._inbox):  # wakes on every delivery and state change
            if self._finished:
                if self._failure is not None:
                    raise self._failure.with_traceback(None)
                raise StopAsyncIteration
            if self._runner is None:
                raise ConnectionClosedError("client not started: use 'async with' or connect()")
            await self._inbox.changed()
        message, mark = self._inbox.take()
        if mark is not None:
            self._dialect.hand(mark)  # handed over now: the application's loop body runs next
        return message

    def check_open(self, *, started_only: bool) -> None:
        """Raise the give-up exception, or ``ConnectionClosedError`` once closed (or, with
        ``started_only``, before `connect()`)."""
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        if self._stopped.is_set() or self._finished:
            raise ConnectionClosedError("client is closed", code=CloseCode.NORMAL)
        if started_only and self._runner is None:
            raise ConnectionClosedError("client not started: use 'async with' or connect()")

    # -- sending ---------------------------------------------------------------------

    async def send(self, frame: str | bytes, request_id: str | None = None) -> None:
        """Write now when ready with nothing queued before it; otherwise queue it."""
        if self._failure is not None or self._stopped.is_set():
            self.check_open(started_only=False)
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

    def unqueue(self, frame: str | bytes, request_id: str | None) -> bool:
        """Take a message out of the offline queue if it is still there; whether it was."""
        return self._outbox.discard((frame, request_id))

    @contextlib.asynccontextmanager
    async def ready_session(self) -> AsyncIterator[Session | None]:
        """Hold the send lock; yield the current session if it is ready, else ``None``.

        Nothing else is written meanwhile, so a frame written here keeps its place
        relative to the offline queue and the state sent again on a new connection.
        """
        async with self._send_lock:
            session = self._session
            yield session if session is not None and session.ready else None

    # -- the connections ---------------------------------------------------------------

    async def _run(self) -> None:
        connections = Connections(self._dialer, self._policy, stopped=self._stopped, owner=self.id)
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

    async def _serve(self, ws: ClientConnection) -> Disconnect:
        """Serve one connection until it closes; return how it ended.

        The session is the current one meanwhile; it is detached first thing once the
        reader ends, so later sends are queued for the next connection.
        """
        session = Session(ws, self._dialect, owner=self.id)
        self._session = session
        reader = session.start()
        try:
            if self._stopped.is_set():
                await session.close(CloseCode.NORMAL, "", by_user=True)
            elif await self._dialect.await_ready(session, reader):
                session.established = True
                cadence = self._dialect.cadence(session)
                if cadence is not None:
                    session.watch(*cadence)
                if await self._restore(session):
                    work = self._dialect.session_work(session)
                    if work is not None:
                        session.spawn(work, "session work")
                    logger.info("client %s: connected to %s", self.id, self.safe_url)
                    self._inbox.notify()
                    await call_hook(self.id, "on_connect", self._on_connect)
            await asyncio.wait({reader})
        finally:
            self._session = None
            await session.stop(self._timeouts.close)
        disconnect = session.outcome()
        self._requests.fail(
            session.inflight,
            lambda: ConnectionClosedError(
                f"connection lost before a reply: {disconnect.describe()}"
            ),
        )
        self._inbox.notify()
        await call_hook(self.id, "on_disconnect", self._on_disconnect, disconnect)
        return disconnect

    async def _restore(self, session: Session) -> bool:
        """Send the state again and flush the offline queue in order, then mark the
        session ready."""
        try:
            async with self._send_lock:
                await self._dialect.resend_state(session)
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

    def _finish(self) -> None:
        self._finished = True
        error = self._failure or ConnectionClosedError("client is closed", code=CloseCode.NORMAL)
        self._requests.fail_all(error)
        self._inbox.notify()
