"""One open connection of a reconnecting client: its reader, its watchdog, how it ended.

A `Session` serves one websockets connection until it closes: its reader hands every
inbound frame to the `FrameHandler` it was built with (the envelope client's dialect,
or the raw one), its optional watchdog pings on a cadence and closes 4408 when the
server falls silent, and `Session.stop()` cancels and awaits its tasks and closes the
socket. `Session.outcome()` then turns the close into the
[`Disconnect`][tempest_ws.client.Disconnect] the reconnect policy decides on. The order
of a connection's life (ready, restored, flushed) is the engine's
(``tempest_ws.client._engine``). Requires the ``client`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from tempest_ws._bounded import STOP_TIMEOUT, bounded, cancel_tasks
from tempest_ws.client._disconnect import Disconnect
from tempest_ws.exceptions import MissingDependencyError
from tempest_ws.wire._liveness import HeartbeatAction, Liveness
from tempest_ws.wire.codes import CloseCode

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = ["FrameHandler", "Session", "call_hook"]

logger = logging.getLogger("tempest_ws.client")


class FrameHandler(Protocol):
    """What a session calls for each inbound frame and for each of its own pings."""

    async def on_frame(self, session: Session, frame: str | bytes) -> None:
        """Handle one inbound frame of ``session``."""

    async def ping(self, session: Session) -> None:
        """Send the client's own ping on ``session`` (the watchdog's cadence)."""


class Session:
    """One open connection, what the client learnt about it, and the tasks serving it.

    ``owner`` (the client id) names its tasks and log records.
    """

    def __init__(self, ws: ClientConnection, handler: FrameHandler, *, owner: str) -> None:
        self.ws = ws
        self.owner = owner
        self._handler = handler
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

    def start(self) -> asyncio.Task[None]:
        """Start the reader (the session's first task) and return it."""
        return self.spawn(self._read_loop(), "reader")

    def watch(self, interval: float, silence: float) -> None:
        """Start the watchdog: ping every ``interval``, close 4408 after ``silence``."""
        self.spawn(self._watch(interval, silence), "watchdog")

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as one of the session's tasks (cancelled by `stop()`)."""
        task = asyncio.create_task(work, name=f"tempest_ws client {self.owner} {name}")
        self.tasks.append(task)
        return task

    async def close(self, code: int, reason: str, *, by_user: bool = False) -> None:
        """Close with ``code``; the first close decides what the ``Disconnect`` reports."""
        if self.local_close is None:
            self.local_close, self.local_reason, self.by_user = int(code), reason, by_user
        await self.ws.close(code, reason)

    async def stop(self, close_timeout: float) -> None:
        """Cancel and await the session's tasks (a task that died is logged), then close
        the socket, waiting at most ``close_timeout`` for the closing handshake."""
        await cancel_tasks(self.tasks, f"client {self.owner} task", limit=STOP_TIMEOUT)
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error("client %s: task died", self.owner, exc_info=task.exception())
        # websockets bounds the closing handshake by close_timeout; this bounds the rest.
        limit = close_timeout + STOP_TIMEOUT
        await bounded(self.ws.close(), f"client {self.owner} websocket", limit=limit)

    def outcome(self) -> Disconnect:
        """How the connection ended (call it after `stop()`)."""
        # The peer's close frame; else the one websockets sent itself (1009 for an
        # oversized message, 1011 for a keepalive timeout); else the TCP connection dropped.
        frame = self.ws.protocol.close_rcvd or self.ws.protocol.close_sent
        code = self.local_close
        if code is None:
            code = frame.code if frame is not None else CloseCode.ABNORMAL
        return Disconnect(
            code=code,
            reason=self.local_reason or (frame.reason if frame is not None else ""),
            by_user=self.by_user,
            established=self.established,
            uptime=asyncio.get_running_loop().time() - self.opened_at,
        )

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        on_frame = self._handler.on_frame
        try:
            async for frame in self.ws:
                if self.liveness is not None:
                    self.liveness.touch(loop.time())
                await on_frame(self, frame)
        except ConnectionClosed:
            pass
        except Exception:  # task boundary: a bug here must not leave a half-dead socket
            logger.exception("client %s: failed on an inbound frame; closing", self.owner)
            await self.close(CloseCode.INTERNAL_ERROR, "client error")

    async def _watch(self, interval: float, silence: float) -> None:
        """Ping on the cadence; close 4408 once nothing arrived for ``silence`` seconds."""
        loop = asyncio.get_running_loop()
        live = Liveness.starting_at(loop.time(), interval=interval, timeout=silence)
        self.liveness = live
        try:
            await self._handler.ping(self)
            while True:  # one turn per deadline; ends with the timeout or the socket
                await asyncio.sleep(max(0.0, live.next_deadline() - loop.time()))
                now = loop.time()
                action = live.check(now)
                if action is HeartbeatAction.TIMEOUT:
                    logger.warning(
                        "client %s: server silent for %.1fs; closing and reconnecting",
                        self.owner,
                        silence,
                    )
                    await self.close(CloseCode.HEARTBEAT_TIMEOUT, "silent")
                    return
                if action is HeartbeatAction.PING:
                    live.last_ping = now
                    await self._handler.ping(self)
        except ConnectionClosed:
            pass


async def call_hook(owner: str, name: str, hook: Callable[..., Any] | None, *args: Any) -> None:
    """Run an application hook (sync or async); its exception is logged, never raised."""
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:  # the application's code: log it and carry on
        logger.exception("client %s: %s hook raised", owner, name)
