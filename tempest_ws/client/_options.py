"""What a reconnecting client can be configured with, and the checks on it.

`ClientOptions` lists the keyword options shared by both clients of
``tempest_ws.client``, the hook signatures they accept, the default ``is_fatal`` hook
(`default_is_fatal()`) and the argument checks that raise
[`ConfigurationError`][tempest_ws.exceptions.ConfigurationError] when a client is built. Requires
the
``client`` extra (websockets).
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from tempest_ws.client._backoff import Backoff, Overflow, ReconnectPolicy
from tempest_ws.client._disconnect import Disconnect
from tempest_ws.exceptions import ConfigurationError, MissingDependencyError, RequestError
from tempest_ws.wire.codes import CLOSE_CODE_INFO, CloseCode
from tempest_ws.wire.envelope import WSEnvelope

try:
    from websockets.exceptions import InvalidMessage
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = [
    "ClientOptions",
    "DisconnectHook",
    "EnvelopeHook",
    "Hook",
    "RecoveryHook",
    "SubscribeErrorHook",
    "Timeouts",
    "TokenProvider",
    "build_policy",
    "check_known",
    "default_is_fatal",
    "positive",
]

Hook = Callable[[], Awaitable[None] | None]
DisconnectHook = Callable[[Disconnect], Awaitable[None] | None]
EnvelopeHook = Callable[[WSEnvelope], Awaitable[None] | None]
RecoveryHook = Callable[[str, bool, WSEnvelope], Awaitable[None] | None]
SubscribeErrorHook = Callable[[str, RequestError], Awaitable[None] | None]
TokenProvider = Callable[[], Awaitable[str]]

_RETRY_STATUSES = frozenset({401, 408, 429, 500, 502, 503, 504})


def default_is_fatal(disconnect: Disconnect) -> bool:
    """The default ``is_fatal`` hook: True when reconnecting cannot help.

    Fatal: close codes `CLOSE_CODE_INFO` marks as not worth a
    reconnect (such as 1003, 1008, 4403; 1000 from the server is not), handshake refusals
    other than HTTP 401/408/429/5xx, and errors other than network errors (a bad URL, a
    token that cannot be sent). A raising URL function or token provider is retried.
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
    if error is None or disconnect.stage in ("url", "token"):
        return False
    if isinstance(error, OSError | TimeoutError):
        return False
    return not (isinstance(error, InvalidMessage) and isinstance(error.__cause__, EOFError))


class ClientOptions(TypedDict, total=False):
    """Options shared by `WebSocketClient` and `RawWebSocketClient`.

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
        max_unauthorized: consecutive 4401s before `UnauthorizedError` (default 3).
        max_retries: consecutive failed attempts before `ClientGaveUpError`
            (default ``None``: never give up).
        min_uptime: seconds a connection must last to reset the backoff (default 5).
        restart_spread: after a 1012 (service restart), wait at least a uniformly random
            time in ``[0, restart_spread]`` seconds, capped at the backoff's
            ``max_delay`` (default 5; 0: the plain backoff).
        is_fatal: ``(Disconnect) -> bool``; true stops the client (default
            `default_is_fatal()`).
        rng: the ``random.Random`` behind the jitter (seed it in tests).
        queue_size: messages kept while disconnected (default 1000).
        queue_overflow: ``"drop_oldest"`` (default; logs a warning) or ``"raise"``
            (`SendQueueFullError`).
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
    restart_spread: float
    is_fatal: Callable[[Disconnect], bool]
    rng: random.Random
    queue_size: int
    queue_overflow: Overflow
    inbox_size: int
    silence_timeout: float | None
    on_connect: Hook
    on_disconnect: DisconnectHook


def check_known(options: Mapping[str, object]) -> None:
    """Raise ``ConfigurationError`` naming every key that is not a `ClientOptions`."""
    unknown = sorted(set(options) - set(ClientOptions.__optional_keys__))
    if unknown:
        raise ConfigurationError(f"unknown client option(s): {', '.join(unknown)}")


def positive(value: float, name: str) -> float:
    """Return ``value``; raise ``ConfigurationError`` unless it is a positive number."""
    if not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds")
    return value


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The checked timeouts of `ClientOptions`, in seconds (``silence``: ``None`` = off)."""

    open: float
    close: float
    silence: float | None

    @classmethod
    def of(cls, options: ClientOptions) -> Timeouts:
        """Read and check them; raises ``ConfigurationError`` for a non-positive one."""
        silence = options.get("silence_timeout")
        return cls(
            open=positive(options.get("open_timeout", 10.0), "open_timeout"),
            close=positive(options.get("close_timeout", 5.0), "close_timeout"),
            silence=None if silence is None else positive(silence, "silence_timeout"),
        )


def build_policy(options: ClientOptions) -> ReconnectPolicy:
    """The `ReconnectPolicy` the options describe (``ConfigurationError`` if invalid)."""
    return ReconnectPolicy(
        is_fatal=options.get("is_fatal", default_is_fatal),
        backoff=options.get("backoff"),
        long_backoff=options.get("long_backoff"),
        max_unauthorized=options.get("max_unauthorized", 3),
        max_retries=options.get("max_retries"),
        min_uptime=options.get("min_uptime", 5.0),
        restart_spread=options.get("restart_spread", 5.0),
        rng=options.get("rng"),
    )
