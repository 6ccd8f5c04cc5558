"""Helpers for testing applications built on tempest_ws against a real server.

- `serve()` runs any ASGI app under a real uvicorn server on a free loopback port
  inside the current event loop; `live_server()` wraps it in a `LiveServer`
  that opens clients, and `live_client()` does both for the one-client case. A
  `LiveClient` has already read the ``hello`` frame.
- `expect_envelope()` and `expect_close()` await the next envelope of a type, or
  the close code, with a bound so a regression fails instead of hanging.
- `FakeTokens` is a token/resolver pair without cryptography; `make_token()`
  signs a JWT the [`jwt_bearer_resolver()`][tempest_ws.router.auth.jwt_bearer_resolver] accepts.
- `HubProbe` records what a [`WebSocketHub`][tempest_ws.hub._hub.WebSocketHub] delivered to
  whom, without changing what it does.

The client side needs the ``websockets`` package and the server side uvicorn (both in
the ``server`` extra). Waits here are bounds, never synchronisation: nothing sleeps to
let something happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol
from urllib.parse import urlencode

import jwt

from tempest_ws._types import UserId
from tempest_ws.exceptions import EnvelopeError, MissingDependencyError
from tempest_ws.router.server import uvicorn_options
from tempest_ws.settings import WebSocketSettings
from tempest_ws.testing._probe import DEFAULT_TIMEOUT, HubProbe, ProbedDelivery, ProbedFrame
from tempest_ws.wire.envelope import HELLO, PING, PONG, WSEnvelope, decode_envelope, encode_envelope

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection


__all__ = [
    "DEFAULT_TIMEOUT",
    "FakeTokens",
    "HubProbe",
    "LiveClient",
    "LiveServer",
    "ProbedDelivery",
    "ProbedFrame",
    "TokenCarrier",
    "expect_close",
    "expect_envelope",
    "live_client",
    "live_server",
    "make_token",
    "serve",
]

_MAX_FRAMES: Final = 10_000


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


# -- tokens -----------------------------------------------------------------------------


class FakeTokens:
    """A token/resolver pair for tests: opaque random tokens, no secret, no JWT.

    ``tokens.issue("alice")`` returns a token; give ``tokens.resolver`` to
    ``make_websocket_router(bearer_resolver=...)``. Unknown and revoked tokens resolve to
    ``None``, which the router closes 4401. To test the real JWT path instead, sign with
    `make_token()` and your test secret.
    """

    def __init__(self) -> None:
        self._users: dict[str, UserId] = {}

    def issue(self, user_id: UserId) -> str:
        """A new token that resolves to ``user_id`` (valid in a subprotocol header)."""
        token = "test-" + secrets.token_urlsafe(18)
        self._users[token] = user_id
        return token

    def revoke(self, token: str) -> None:
        """Make ``token`` resolve to ``None`` from now on (connections stay open)."""
        self._users.pop(token, None)

    async def resolver(self, token: str) -> UserId | None:
        """The bearer resolver: the user the token was issued for, or ``None``."""
        return self._users.get(token)


# -- waiting for frames -----------------------------------------------------------------


class _Socket(Protocol):
    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...


def _closed_types() -> tuple[type[BaseException], ...]:
    from websockets.exceptions import ConnectionClosed

    return (ConnectionClosed,)


def _close_of(exc: BaseException) -> str:
    received = getattr(exc, "rcvd", None)
    if received is None:
        return "without a close frame"
    return f"with {received.code} {received.reason!r}"


async def expect_envelope(
    ws: _Socket,
    message_type: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    skip_others: bool = False,
    answer_pings: bool = True,
) -> WSEnvelope:
    """Read from ``ws`` until a ``message_type`` envelope arrives; return it.

    Heartbeat ``ping`` envelopes are skipped (and answered with a ``pong`` echoing their
    ``request_id`` unless ``answer_pings`` is false) unless ``message_type`` is ``ping``.
    Any other type fails the test, unless ``skip_others``. ``ws`` is a
    `LiveClient` or a ``websockets`` client connection.

    Raises:
        AssertionError: nothing matching within ``timeout`` seconds, the connection
            closed first (the message gives its close code), or an unexpected type came.
    """
    closed = _closed_types()
    try:
        async with asyncio.timeout(timeout):
            for _ in range(_MAX_FRAMES):
                envelope = decode_envelope(await ws.recv())
                if envelope.type == message_type:
                    return envelope
                if envelope.type == PING:
                    if answer_pings:
                        pong: dict[str, Any] = {
                            "type": PONG,
                            "data": {},
                            "request_id": envelope.request_id,
                        }
                        await ws.send(encode_envelope(pong))
                    continue
                if not skip_others:
                    raise AssertionError(
                        f"expected a {message_type!r} envelope, got {envelope.type!r}: "
                        f"{json.dumps(envelope.data)[:200]}"
                    )
    except TimeoutError:
        raise AssertionError(f"no {message_type!r} envelope within {timeout} s") from None
    except EnvelopeError as exc:
        raise AssertionError(f"the server sent a frame that is not an envelope: {exc}") from None
    except closed as exc:
        raise AssertionError(
            f"connection closed {_close_of(exc)} before a {message_type!r} envelope"
        ) from None
    raise AssertionError(f"no {message_type!r} envelope in {_MAX_FRAMES} frames")


async def expect_close(ws: _Socket, *, timeout: float = DEFAULT_TIMEOUT) -> int:  # noqa: ASYNC109
    """Read (and drop) frames until the server closes; return the close code it sent.

    Raises:
        AssertionError: still open after ``timeout`` seconds, or the TCP connection
            dropped without a close frame.
    """
    closed = _closed_types()
    try:
        async with asyncio.timeout(timeout):
            for _ in range(_MAX_FRAMES):
                await ws.recv()
    except TimeoutError:
        raise AssertionError(f"connection still open after {timeout} s") from None
    except closed as exc:
        received = getattr(exc, "rcvd", None)
        if received is None:
            raise AssertionError("connection dropped without a close frame") from None
        return int(received.code)
    raise AssertionError(f"connection still open after {_MAX_FRAMES} frames")


# -- a real server and its clients ------------------------------------------------------


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
