"""A real uvicorn server for tests, and the clients that connect to it.

`serve()` runs any ASGI app under a real uvicorn server on a free loopback port inside
the current event loop; `live_server()` wraps it in a `LiveServer` that opens clients,
and `live_client()` does both for the one-client case. A `LiveClient` has already read
the ``hello`` frame.

The client side needs the ``websockets`` package and the server side uvicorn (both in
the ``server`` extra). Waits here are bounds, never synchronisation: nothing sleeps to
let something happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from tempest_ws.exceptions import MissingDependencyError
from tempest_ws.router.server import uvicorn_options
from tempest_ws.settings import WebSocketSettings
from tempest_ws.testing._expect import expect_close, expect_envelope
from tempest_ws.testing._probe import DEFAULT_TIMEOUT
from tempest_ws.wire.envelope import HELLO, WSEnvelope, encode_envelope

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = ["LiveClient", "LiveServer", "TokenCarrier", "live_client", "live_server", "serve"]


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
    start_timeout: float = 30.0,
    **uvicorn_kwargs: Any,
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on ``host``; yield ``"http://host:port"``.

    ``port=0`` picks a free port; give the previous port to restart a server in place.
    ``start_timeout`` bounds the wait for uvicorn to start (lifespan startup included):
    past it ``TimeoutError`` is raised.

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
        try:
            async with asyncio.timeout(start_timeout):
                while not server.started:
                    if task.done():
                        task.result()
                        raise RuntimeError("uvicorn exited before starting")
                    await asyncio.sleep(0.01)
        except TimeoutError:
            task.cancel()  # a hung startup never reads should_exit: the finally would hang
            raise
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


class LiveClient:
    """A ``websockets`` client connected to a `LiveServer`.

    Attributes:
        ws: the underlying ``websockets`` ``ClientConnection``.
        hello: the ``hello`` envelope, already read (``None`` if the client was opened
            with ``wait_hello=False``).
    """

    def __init__(self, ws: ClientConnection, hello: WSEnvelope | None) -> None:
        self.ws = ws
        self.hello = hello

    @property
    def connection_id(self) -> str:
        """The server's id for this connection, from ``hello``."""
        if self.hello is None:
            raise AssertionError("no hello was read (wait_hello=False)")
        return str(self.hello.data["connection_id"])

    async def recv(self) -> str | bytes:
        """The next raw frame (``ws.recv()``)."""
        return await self.ws.recv()

    async def send(self, message: str) -> None:
        """Send one raw text frame."""
        await self.ws.send(message)

    async def send_envelope(
        self, message_type: str, data: Any = None, *, request_id: str | None = None
    ) -> None:
        """Send ``{"type": message_type, "data": data or {}, "request_id": request_id}``."""
        body = {"type": message_type, "data": {} if data is None else data}
        await self.ws.send(encode_envelope({**body, "request_id": request_id}))

    async def expect(
        self,
        message_type: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
        skip_others: bool = False,
    ) -> WSEnvelope:
        """`expect_envelope()` on this client."""
        return await expect_envelope(self, message_type, timeout=timeout, skip_others=skip_others)

    async def expect_close(self, *, timeout: float = DEFAULT_TIMEOUT) -> int:  # noqa: ASYNC109
        """`expect_close()` on this client."""
        return await expect_close(self, timeout=timeout)


TokenCarrier = Literal["subprotocol", "header", "query"]
"""How `LiveServer.connect()` sends the token: ``bearer`` subprotocol, header or query."""


@dataclass(frozen=True, slots=True)
class LiveServer:
    """A running server (from `live_server()`) that opens clients.

    Attributes:
        base_url: ``http://127.0.0.1:<port>``, for ``httpx`` calls to the same app.
    """

    base_url: str

    def ws_url(self, path: str = "/ws", **query: str) -> str:
        """``ws://127.0.0.1:<port><path>``, with ``query`` as the query string."""
        url = self.base_url.replace("http://", "ws://", 1) + path
        return f"{url}?{urlencode(query)}" if query else url

    @contextlib.asynccontextmanager
    async def connect(
        self,
        token: str | None = None,
        *,
        path: str = "/ws",
        via: TokenCarrier = "subprotocol",
        origin: str | None = None,
        wait_hello: bool = True,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> AsyncIterator[LiveClient]:
        """Open a client; yield it once ``hello`` was read (unless ``wait_hello=False``).

        The token travels the way ``via`` says: the ``bearer`` subprotocol (as a browser
        sends it), an ``Authorization`` header or ``?token=``. Use ``wait_hello=False``
        to test a refusal, then ``await client.expect_close()``. The client is closed on
        exit.

        Raises:
            AssertionError: ``wait_hello`` and the server closed instead of saying hello.
        """
        try:
            from websockets.asyncio.client import connect
            from websockets.typing import Subprotocol
        except ImportError:
            raise MissingDependencyError("websockets", "server") from None
        options: dict[str, Any] = {"proxy": None, "open_timeout": timeout}
        query: dict[str, str] = {}
        if token is not None and via == "subprotocol":
            options["subprotocols"] = [Subprotocol("bearer"), Subprotocol(token)]
        elif token is not None and via == "header":
            options["additional_headers"] = {"Authorization": f"Bearer {token}"}
        elif token is not None:
            query["token"] = token
        if origin is not None:
            options["origin"] = origin
        async with connect(self.ws_url(path, **query), **options) as ws:
            client = LiveClient(ws, None)
            if wait_hello:
                client.hello = await expect_envelope(client, HELLO, timeout=timeout)
            yield client


@contextlib.asynccontextmanager
async def live_server(
    app: Any, *, settings: WebSocketSettings | None = None, **uvicorn_kwargs: Any
) -> AsyncIterator[LiveServer]:
    """Run ``app`` on a real uvicorn on a free loopback port (see `serve()`)."""
    async with serve(app, settings=settings, **uvicorn_kwargs) as base_url:
        yield LiveServer(base_url)


@contextlib.asynccontextmanager
async def live_client(
    app: Any,
    token: str | None = None,
    *,
    settings: WebSocketSettings | None = None,
    path: str = "/ws",
    via: TokenCarrier = "subprotocol",
    wait_hello: bool = True,
) -> AsyncIterator[LiveClient]:
    """Run ``app`` on a real uvicorn and yield one connected `LiveClient`.

    The server stops when the block ends (after the client closes). For several clients
    use `live_server()` and `LiveServer.connect()`.
    """
    async with (
        live_server(app, settings=settings) as server,
        server.connect(token, path=path, via=via, wait_hello=wait_hello) as client,
    ):
        yield client
