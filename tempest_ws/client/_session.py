"""One connection of a reconnecting client: open it, serve it, report how it ended.

`_open_connection()` asks the client for a token and the handshake and connects,
returning the connection or the [`Disconnect`][tempest_ws.client._backoff.Disconnect] that says why
not. A `_Session` then serves that connection until it closes: it runs the reader
and the silence watchdog, waits for the client to call it ready, restores state,
flushes the offline queue and starts the client's session work (the envelope client's
in-band token refresh), and finally cancels and awaits its tasks and turns the close
into a ``Disconnect`` for the reconnect loop of ``tempest_ws._reconnect``. What the two
clients do differently comes from the client's hook methods (``_on_frame``,
``_await_ready``...). Requires the ``client`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from tempest_ws._bounded import STOP_TIMEOUT, bounded, cancel_tasks
from tempest_ws.client._backoff import Disconnect
from tempest_ws.exceptions import ConfigurationError, ConnectionClosedError, MissingDependencyError
from tempest_ws.router._heartbeat import HeartbeatAction, Liveness
from tempest_ws.wire.codes import CloseCode

try:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
    from websockets.typing import Origin, Subprotocol
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

if TYPE_CHECKING:
    from tempest_ws.client._reconnect import _ReconnectingClient

__all__ = ["_Session", "_call_hook", "_open_connection"]

logger = logging.getLogger("tempest_ws.client")


class _QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets logs handshake headers and frame contents at DEBUG: never enable it."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WIRE_LOGGER = _QuietLogger(logging.getLogger("websockets.client"), {})


async def _open_connection(client: _ReconnectingClient[Any]) -> ClientConnection | Disconnect:
    """Resolve the URL, fetch a token and connect; a failure comes back as a
    ``Disconnect``, not raised."""
    try:
        await client._resolve_url()
    except ConfigurationError as exc:
        logger.warning("client %s: the URL function returned an invalid URL", client.id)
        return Disconnect(error=exc, stage="connect")
    except Exception as exc:  # noqa: BLE001 - the application's URL function: retried
        logger.warning("client %s: URL function raised %s", client.id, type(exc).__name__)
        return Disconnect(error=exc, stage="url")
    try:
        token = await client._get_token()
    except Exception as exc:  # noqa: BLE001 - the application's provider: retried
        logger.warning("client %s: token provider raised %s", client.id, type(exc).__name__)
        return Disconnect(error=exc, stage="token")
    try:
        url, protocols, headers = client._handshake(token)
        options = client._options
        origin = options.get("origin")
        keepalive = options.get("keepalive", 20.0)
        ws = await connect(
            url,
            subprotocols=[Subprotocol(p) for p in protocols] or None,
            additional_headers=headers or None,
            origin=Origin(origin) if origin else None,
            max_size=options.get("max_size", 2**20),
            open_timeout=client._open_timeout,
            close_timeout=client._close_timeout,
            ping_interval=keepalive,
            ping_timeout=keepalive,
            logger=_WIRE_LOGGER,
            **options.get("connect_options", {}),
        )
    except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
        status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
        logger.debug(
            "client %s: connecting to %s failed: %s",
            client.id,
            client.safe_url,
            f"HTTP {status}" if status else type(exc).__name__,
        )
        return Disconnect(error=exc, http_status=status, stage="connect")
    logger.debug("client %s: handshake with %s done", client.id, client.safe_url)
    return ws


class _Session:
    """One open connection, what the client learnt about it, and the tasks serving it."""

    def __init__(self, client: _ReconnectingClient[Any], ws: ClientConnection) -> None:
        self.client = client
        self.ws = ws
        self.opened_at = asyncio.get_running_loop().time()
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

    async def serve(self) -> Disconnect:
        """Serve the connection until it closes; return how it ended.

        The session is the client's current one meanwhile; it is detached first thing
        once the reader ends, so later sends are queued for the next connection.
        """
        client, ws = self.client, self.ws
        client._session = self
        self._spawn(self._read_loop(), "reader")
        reader = self.tasks[0]
        try:
            if client._stopping:
                await self.close(CloseCode.NORMAL, "", by_user=True)
            elif await client._await_ready(self, reader):
                self.established = True
                cadence = client._cadence(self)
                if cadence is not None:
                    self._spawn(self._watch(*cadence), "watchdog")
                if await self._restore():
                    work = client._session_work(self)
                    if work is not None:
                        self._spawn(work, "session work")
                    logger.info("client %s: connected to %s", client.id, client.safe_url)
                    client._notify()
                    await _call_hook(client, "on_connect", client._options.get("on_connect"))
            await asyncio.wait({reader})
        finally:
            client._session = None
            await cancel_tasks(self.tasks, f"client {client.id} task", limit=STOP_TIMEOUT)
            for task in self.tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.error("client %s: task died", client.id, exc_info=task.exception())
            # websockets bounds the closing handshake by close_timeout; this bounds the rest.
            limit = client._close_timeout + STOP_TIMEOUT
            await bounded(ws.close(), f"client {client.id} websocket", limit=limit)
        # The peer's close frame; else the one websockets sent itself (1009 for an
        # oversized message, 1011 for a keepalive timeout); else the TCP connection dropped.
        frame = ws.protocol.close_rcvd or ws.protocol.close_sent
        code = self.local_close
        if code is None:
            code = frame.code if frame is not None else CloseCode.ABNORMAL
        disconnect = Disconnect(
            code=code,
            reason=self.local_reason or (frame.reason if frame is not None else ""),
            by_user=self.by_user,
            established=self.established,
            uptime=asyncio.get_running_loop().time() - self.opened_at,
        )
        for request_id in self.inflight:
            waiter = client._requests.get(request_id)
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    ConnectionClosedError(
                        f"connection lost before a reply: {disconnect.describe()}"
                    )
                )
        client._notify()
        await _call_hook(client, "on_disconnect", client._options.get("on_disconnect"), disconnect)
        return disconnect

    async def close(self, code: int, reason: str, *, by_user: bool = False) -> None:
        """Close with ``code``; the first close decides what the ``Disconnect`` reports."""
        if self.local_close is None:
            self.local_close, self.local_reason, self.by_user = int(code), reason, by_user
        await self.ws.close(code, reason)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=f"tempest_ws client {self.client.id} {name}")
        self.tasks.append(task)

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for frame in self.ws:
                if self.liveness is not None:
                    self.liveness.touch(loop.time())
                await self.client._on_frame(self, frame)
        except ConnectionClosed:
            pass
        except Exception:  # task boundary: a bug here must not leave a half-dead socket
            logger.exception("client %s: failed on an inbound frame; closing", self.client.id)
            await self.close(CloseCode.INTERNAL_ERROR, "client error")

    async def _watch(self, interval: float, silence: float) -> None:
        """Ping on the cadence; close 4408 once nothing arrived for ``silence`` seconds."""
        loop = asyncio.get_running_loop()
        live = Liveness.starting_at(loop.time(), interval=interval, timeout=silence)
        self.liveness = live
        try:
            await self.client._ping(self)
            while True:  # one turn per deadline; ends with the timeout or the socket
                await asyncio.sleep(max(0.0, live.next_deadline() - loop.time()))
                now = loop.time()
                action = live.check(now)
                if action is HeartbeatAction.TIMEOUT:
                    logger.warning(
                        "client %s: server silent for %.1fs; closing and reconnecting",
                        self.client.id,
                        silence,
                    )
                    await self.close(CloseCode.HEARTBEAT_TIMEOUT, "silent")
                    return
                if action is HeartbeatAction.PING:
                    live.last_ping = now
                    await self.client._ping(self)
        except ConnectionClosed:
            pass

    async def _restore(self) -> bool:
        """Restore state and flush the offline queue in order, then mark the session ready."""
        client = self.client
        try:
            async with client._send_lock:
                await client._resend_state(self)
                while len(client._outbox):
                    frame, request_id = item = client._outbox.pop()
                    if request_id is not None:
                        self.inflight.add(request_id)
                    try:
                        await self.ws.send(frame)
                    except ConnectionClosed:
                        client._outbox.requeue(item)
                        raise
                self.ready = True
        except ConnectionClosed:
            return False
        return True


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
