"""Graceful shutdown: close WebSockets 1001 with a reason *before* uvicorn says 1012.

On SIGTERM uvicorn stops listening, then at once closes every open WebSocket with 1012
(service restart), and only after that runs the application's lifespan shutdown. So a
hub stopped from the lifespan finds nothing left to close, and clients never learn more
than "restarting". `DrainingServer` inserts a drain between the first two steps:

1. stop accepting (close the listening sockets; the router also closes any handshake
   that still arrives with 1001 on accept);
2. close every connection 1001 with a reason, each first flushing the frames already
   queued for it, all within ``grace`` seconds (the rest are aborted);
3. hand over to uvicorn's own shutdown (HTTP connections, tasks, lifespan).

Usage (one process; ``uvicorn --workers`` and ``--reload`` build their own servers)::

    router = make_websocket_router(handler, hub=hub, bearer_resolver=..., settings=settings)
    app.include_router(router)
    tempest_ws.shutdown.run(app, settings=settings, drain=router)

or, to keep control of the config, ``DrainingServer(uvicorn.Config(app, ...),
drain=router).run()``. Without it nothing changes: clients see 1012. Requires the
``server`` extra (uvicorn).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from tempest_ws.exceptions import ConfigurationError, MissingDependencyError
from tempest_ws.router._router import DRAIN_REASON
from tempest_ws.router.server import uvicorn_options
from tempest_ws.settings import WebSocketSettings

try:
    import uvicorn
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("uvicorn", "server") from None

__all__ = ["DRAIN_REASON", "Drainable", "DrainingServer", "drain", "run"]

logger = logging.getLogger("tempest_ws.shutdown")


@runtime_checkable
class Drainable(Protocol):
    """Anything with the drain of [`WebSocketRouter`][tempest_ws.router._router.WebSocketRouter]."""

    async def drain(self, *, reason: str = ..., grace: float = ...) -> int:
        """Close every connection 1001 with ``reason`` within ``grace`` seconds."""
        ...


async def drain(*targets: Drainable, reason: str = DRAIN_REASON, grace: float = 10.0) -> int:
    """Drain every target concurrently; returns how many connections were asked to close.

    Never raises for a connection that misbehaves: one that is still open after ``grace``
    seconds is aborted. A target that raises is logged and skipped.
    """
    results = await asyncio.gather(
        *(target.drain(reason=reason, grace=grace) for target in targets),
        return_exceptions=True,
    )
    closed = 0
    for result in results:
        if isinstance(result, BaseException):
            logger.error("drain failed", exc_info=result)
        else:
            closed += result
    return closed


class DrainingServer(uvicorn.Server):
    """A ``uvicorn.Server`` that drains WebSocket routers before its own shutdown.

    Args:
        config: the uvicorn configuration (pass ``**uvicorn_options(settings)`` to it).
        drain: the router(s) returned by ``make_websocket_router``.
        grace: seconds allowed for the drain (``WS_DRAIN_TIMEOUT_SECONDS``).
        reason: close reason sent with 1001.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        drain: Drainable | Iterable[Drainable],
        grace: float = 10.0,
        reason: str = DRAIN_REASON,
    ) -> None:
        super().__init__(config)
        self.drain_targets: tuple[Drainable, ...] = (
            (drain,) if isinstance(drain, Drainable) else tuple(drain)
        )
        if grace <= 0:
            raise ConfigurationError("grace must be positive")
        self.grace = grace
        self.reason = reason

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain the WebSocket routers, then run uvicorn's shutdown."""
        for server in getattr(self, "servers", ()):
            server.close()
        for sock in sockets or ():
            sock.close()
        logger.info("draining WebSocket connections (grace %.1fs)", self.grace)
        closed = await drain(*self.drain_targets, reason=self.reason, grace=self.grace)
        logger.info("drained %d WebSocket connection(s)", closed)
        await super().shutdown(sockets=sockets)


def run(
    app: Any,
    *,
    settings: WebSocketSettings,
    drain: Drainable | Iterable[Drainable],
    host: str = "127.0.0.1",
    port: int = 8000,
    **uvicorn_kwargs: Any,
) -> None:
    """Like `tempest_ws.server.run()`, with a drain before shutdown.

    ``grace`` comes from ``WS_DRAIN_TIMEOUT_SECONDS``. Raises `ConfigurationError`
    for ``workers`` > 1 or ``reload`` (their supervisors build plain uvicorn servers).
    """
    if uvicorn_kwargs.get("reload") or int(uvicorn_kwargs.get("workers") or 1) > 1:
        raise ConfigurationError(
            "the drain runs in one process: start one process per worker instead of "
            "passing workers or reload"
        )
    config = uvicorn.Config(
        app, host=host, port=port, **{**uvicorn_options(settings), **uvicorn_kwargs}
    )
    DrainingServer(config, drain=drain, grace=settings.WS_DRAIN_TIMEOUT_SECONDS).run()
