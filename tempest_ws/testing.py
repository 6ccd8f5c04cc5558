"""Helpers for testing applications built on tempest_ws against a real server.

``serve`` runs any ASGI app under a real uvicorn server on a free loopback port inside
the current event loop, so a test drives it with a real WebSocket client and sees the
real handshake, close codes and timing. ``make_token`` signs a JWT the
:func:`~tempest_ws.auth.jwt_bearer_resolver` accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import jwt

from .exceptions import MissingDependencyError
from .server import uvicorn_options
from .settings import WebSocketSettings

__all__ = ["make_token", "serve"]


def make_token(
    subject: str,
    *,
    secret: str,
    algorithm: str = "HS256",
    expires_in: float = 300.0,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """Sign a JWT with ``sub`` and ``exp`` (``expires_in`` seconds from now, may be negative)."""
    payload: dict[str, Any] = {"sub": subject, "exp": int(time.time() + expires_in)}
    payload.update(claims or {})
    return jwt.encode(payload, secret, algorithm=algorithm)


def _quiet_server_class() -> Any:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """A uvicorn server that leaves the test process's signal handlers alone."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


@contextlib.asynccontextmanager
async def serve(
    app: Any,
    *,
    settings: WebSocketSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **uvicorn_kwargs: Any,
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on ``host``; yield ``"http://host:port"``.

    ``port=0`` picks a free port; give the previous port to restart a server in place.

    The app's lifespan runs. On exit the server shuts down gracefully and the task is
    awaited, so no socket or task outlives the block.
    """
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "server") from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on"}
    if settings is not None:
        options.update(uvicorn_options(settings))
    options.update(uvicorn_kwargs)
    server = _quiet_server_class()(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before starting")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
