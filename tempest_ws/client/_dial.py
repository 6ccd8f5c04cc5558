"""Opening one connection: the URL (or URL function), the token, the handshake.

A `Dialer` makes one connection attempt per `Dialer.dial()` call: it calls the URL
function (if the client was given one), asks its `Credentials` for a token and where
to put it, and connects with websockets. A failure comes back as the
[`Disconnect`][tempest_ws.client.Disconnect] the reconnect policy decides on, never
raised. The envelope client's credentials are its token keeper
(``tempest_ws.client._auth``); the raw client has `NoCredentials`. Requires the
``client`` extra (websockets).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from tempest_ws.client._disconnect import Disconnect, retry_after
from tempest_ws.client._options import ClientOptions, Timeouts
from tempest_ws.exceptions import ConfigurationError, MissingDependencyError

try:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.typing import Origin, Subprotocol
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = ["Credentials", "Dialer", "Handshake", "NoCredentials", "UrlSource", "check_url"]

logger = logging.getLogger("tempest_ws.client")

UrlSource = str | Callable[[], str | Awaitable[str]]
"""A fixed URL, or a function (plain or async) called before every connection attempt."""

Handshake = tuple[str, list[str], dict[str, str]]
"""The handshake's ``(url, subprotocols, headers)``."""


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


class Credentials(Protocol):
    """Where a client's token comes from and how it travels in the handshake."""

    async def get_token(self) -> str | None:
        """The token for the next attempt (``None``: none); may raise (retried)."""

    def place(self, token: str | None, handshake: Handshake) -> Handshake:
        """The handshake carrying ``token``."""


class NoCredentials:
    """No token: the raw client's credentials."""

    async def get_token(self) -> str | None:
        """Always ``None``."""
        return None

    def place(self, token: str | None, handshake: Handshake) -> Handshake:
        """``handshake`` unchanged."""
        return handshake


class _QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets logs handshake headers and frame contents at DEBUG: never enable it."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WIRE_LOGGER = _QuietLogger(logging.getLogger("websockets.client"), {})


class Dialer:
    """Connection attempts to ``url`` with ``options``, carrying ``credentials``.

    Raises:
        ConfigurationError: a fixed ``url`` that is not ``ws``/``wss``.
    """

    def __init__(
        self,
        url: UrlSource,
        options: ClientOptions,
        credentials: Credentials,
        *,
        timeouts: Timeouts,
        owner: str,
    ) -> None:
        self._source = url
        if callable(url):
            self._url, self.safe_url = "", "<url function>"
        else:
            self._url, self.safe_url = check_url(url)
        self._options = options
        self._credentials = credentials
        self._timeouts = timeouts
        self._owner = owner

    async def dial(self) -> ClientConnection | Disconnect:
        """Resolve the URL, fetch a token and connect; a failure comes back as a
        ``Disconnect``, not raised."""
        owner = self._owner
        try:
            await self._resolve_url()
        except ConfigurationError as exc:
            logger.warning("client %s: the URL function returned an invalid URL", owner)
            return Disconnect(error=exc, stage="connect")
        except Exception as exc:  # noqa: BLE001 - the application's URL function: retried
            logger.warning("client %s: URL function raised %s", owner, type(exc).__name__)
            return Disconnect(error=exc, stage="url")
        try:
            token = await self._credentials.get_token()
        except Exception as exc:  # noqa: BLE001 - the application's provider: retried
            logger.warning("client %s: token provider raised %s", owner, type(exc).__name__)
            return Disconnect(error=exc, stage="token")
        try:
            url, protocols, headers = self._credentials.place(token, self._handshake())
            options = self._options
            origin = options.get("origin")
            keepalive = options.get("keepalive", 20.0)
            ws = await connect(
                url,
                subprotocols=[Subprotocol(p) for p in protocols] or None,
                additional_headers=headers or None,
                origin=Origin(origin) if origin else None,
                max_size=options.get("max_size", 2**20),
                open_timeout=self._timeouts.open,
                close_timeout=self._timeouts.close,
                ping_interval=keepalive,
                ping_timeout=keepalive,
                logger=_WIRE_LOGGER,
                **options.get("connect_options", {}),
            )
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
            logger.debug(
                "client %s: connecting to %s failed: %s",
                owner,
                self.safe_url,
                f"HTTP {status}" if status else type(exc).__name__,
            )
            return Disconnect(
                error=exc,
                http_status=status,
                stage="connect",
                retry_after=retry_after(exc.response.headers)
                if isinstance(exc, InvalidStatus)
                else None,
            )
        logger.debug("client %s: handshake with %s done", owner, self.safe_url)
        return ws

    def _handshake(self) -> Handshake:
        return (
            self._url,
            list(self._options.get("subprotocols", ())),
            dict(self._options.get("headers", {})),
        )

    async def _resolve_url(self) -> None:
        """Call the URL function (if any) and make its answer the URL of the next attempt.

        Raises whatever the function raises, and ``ConfigurationError`` for a URL that
        is not ``ws``/``wss``.
        """
        source = self._source
        if not callable(source):
            return
        url = source()
        if inspect.isawaitable(url):
            url = await url
        self._url, self.safe_url = check_url(url)
