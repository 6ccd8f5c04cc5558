"""Exceptions raised by tempest_ws.

Hierarchy (every class derives from `TempestWSError`)::

    TempestWSError
    ├── ConfigurationError (ValueError)      bad settings or arguments, raised at build time
    ├── MissingDependencyError (ImportError)  an optional extra is not installed
    ├── EnvelopeError (ValueError)            an inbound frame is not a valid envelope
    ├── UnencodableMessageError (TypeError)   an outbound envelope JSON cannot encode
    ├── CapacityError                         the hub is full (WS_MAX_CONNECTIONS)
    ├── TopicLimitError                       a connection holds WS_MAX_TOPICS_PER_CONNECTION
    ├── ConnectionClosedError (ConnectionError) sending on a closed connection
    ├── BackplaneError (ConnectionError)      the backplane could not publish
    ├── ClientGaveUpError (ConnectionError)   the client stopped reconnecting
    │   └── UnauthorizedError                 the server refused the token too often
    ├── RequestTimeoutError (TimeoutError)    a client request got no reply in time
    ├── RequestError                          the server answered a client request with an error
    └── SendQueueFullError                    the client's offline queue is full ("raise" mode)

Each carries ``code`` (a [`CloseCode`][tempest_ws.wire.codes.CloseCode] or short string) and
``reason``.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from tempest_ws.wire.codes import CloseCode

if TYPE_CHECKING:
    from tempest_ws.client._disconnect import Disconnect

__all__ = [
    "BackplaneError",
    "CapacityError",
    "ClientGaveUpError",
    "ConfigurationError",
    "ConnectionClosedError",
    "EnvelopeError",
    "MissingDependencyError",
    "RequestError",
    "RequestTimeoutError",
    "SendQueueFullError",
    "TempestWSError",
    "TopicLimitError",
    "UnauthorizedError",
    "UnencodableMessageError",
]


class TempestWSError(Exception):
    """Root of every tempest_ws exception.

    Args:
        reason: human-readable explanation (never contains a token or a message body).
        code: a close code, or a short machine-readable string such as ``"invalid_json"``.
    """

    def __init__(self, reason: str, *, code: CloseCode | str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        if self.code is None:
            return self.reason
        label = self.code.name if isinstance(self.code, CloseCode) else self.code
        return f"{self.reason} ({label})"


class ConfigurationError(TempestWSError, ValueError):
    """Settings or arguments that cannot work, raised when the object is built."""


class MissingDependencyError(TempestWSError, ImportError):
    """An optional dependency is missing; the message names the extra and a command that works.

    The command installs the extra's own requirements as the installed tempest-ws declares
    them (``pip install 'redis>=8.1'`` for ``redis``), which works however tempest-ws itself
    was installed; without installed metadata it names ``package`` alone.
    """

    def __init__(self, package: str, extra: str) -> None:
        command = " ".join(shlex.quote(r) for r in _extra_requirements(extra) or [package])
        super().__init__(
            f"{package!r} is not installed; tempest-ws's {extra!r} extra needs: pip install "
            f"{command}",
            code=extra,
        )
        self.package = package
        self.extra = extra


def _extra_requirements(extra: str) -> list[str]:
    """The requirements the installed distribution declares for ``extra``, in order."""
    from importlib import metadata  # only on this error path: importing tempest_ws stays cheap

    try:
        declared = metadata.requires("tempest-ws") or []
    except metadata.PackageNotFoundError:
        return []
    marker = re.compile(rf"""\bextra\s*==\s*["']{re.escape(extra)}["']""")
    found: list[str] = []
    for line in declared:
        requirement, _, condition = line.partition(";")
        if marker.search(condition):
            found.append(requirement.strip())
    return found


class EnvelopeError(TempestWSError, ValueError):
    """A frame that is not a valid envelope; ``code`` is the error envelope's code.

    ``request_id`` is the frame's own ``request_id`` when one could be read from it, so
    the error envelope answers the request that caused it.
    """

    def __init__(
        self, reason: str, *, code: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(reason, code=code)
        self.request_id = request_id


class UnencodableMessageError(TempestWSError, TypeError):
    """An outbound envelope whose ``data`` JSON cannot encode.

    Raised to whoever tried to send it (``hub.broadcast``, ``hub.send_to``,
    ``hub.reply``, ``connection.send``,
    [`encode_envelope()`][tempest_ws.wire.envelope.encode_envelope])
    before anything is queued: no recipient receives a partial message or is closed for
    it. Causes: a value of a type JSON has no form for (a ``set``, a ``datetime`` without
    the orjson extra, an object), a ``dict`` key that is not a string, or nesting deeper
    than the encoder allows (orjson stops at 255 levels). ``message_type`` is the
    envelope's ``type``; ``code`` is ``"unencodable"``.
    """

    def __init__(self, reason: str, *, message_type: str) -> None:
        super().__init__(reason, code="unencodable")
        self.message_type = message_type


class CapacityError(TempestWSError):
    """The hub holds ``WS_MAX_CONNECTIONS`` connections already."""

    def __init__(self, reason: str = "server at capacity") -> None:
        super().__init__(reason, code=CloseCode.TRY_AGAIN_LATER)


class TopicLimitError(TempestWSError):
    """A subscription past the connection's topic cap (``WS_MAX_TOPICS_PER_CONNECTION``).

    Raised by ``hub.subscribe`` before anything is subscribed or authorized; the
    connection keeps its other topics and stays open. ``code`` is ``"topic_limit"``
    (the built-in ``subscribe`` answers with an error envelope of that code),
    ``limit`` the cap.
    """

    def __init__(self, reason: str, *, code: str, limit: int) -> None:
        super().__init__(reason, code=code)
        self.limit = limit


class ConnectionClosedError(TempestWSError, ConnectionError):
    """An operation on a connection that is closed or closing."""


class BackplaneError(TempestWSError, ConnectionError):
    """The backplane could not carry a message to other processes.

    Local delivery has already happened when this is raised from a hub publish.
    """


class ClientGaveUpError(TempestWSError, ConnectionError):
    """The client stopped reconnecting; ``disconnect`` says what happened last."""

    def __init__(self, reason: str, *, disconnect: Disconnect | None = None) -> None:
        code: CloseCode | None = None
        if disconnect is not None and disconnect.code is not None:
            with contextlib.suppress(ValueError):
                code = CloseCode(disconnect.code)
        super().__init__(reason, code=code)
        self.disconnect = disconnect

    def __str__(self) -> str:
        return self.reason  # it already names the close code


class UnauthorizedError(ClientGaveUpError):
    """The server refused the token ``max_unauthorized`` times in a row (4401 or HTTP 401)."""


class RequestTimeoutError(TempestWSError, TimeoutError):
    """No envelope with the request's ``request_id`` arrived within the timeout."""


class _Envelope(Protocol):
    """What an error keeps of the envelope that caused it (a ``WSEnvelope``).

    A protocol rather than the model itself: ``tempest_ws.wire.envelope`` raises the
    exceptions of this module, so this module cannot import it back.
    """

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Any: ...

    @property
    def request_id(self) -> str | None: ...


class RequestError(TempestWSError):
    """The server answered a client request with an ``error`` envelope.

    ``code`` is the envelope's ``data.code`` (such as ``"forbidden"``, ``"not_subscribed"``
    or ``"invalid_data"``; ``"error"`` when it has none), ``reason`` its
    ``data.message``, ``data`` the whole ``data`` object (``{}`` when it is not one; it
    holds the details a server adds, such as pydantic's error locations), ``topic`` its
    ``data.topic`` (or ``None``), ``request_id`` the request's id and ``envelope`` the
    whole answer. Raised with the code ``"invalid_answer"`` when the server's answer does
    not have the shape the request expects (a ``response_model`` it does not validate
    into, a malformed ``ack``); the validation error is then the ``__cause__``.
    """

    code: str

    def __init__(
        self,
        reason: str,
        *,
        code: str = "error",
        topic: str | None = None,
        envelope: _Envelope | None = None,
        data: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(reason, code=code)
        self.topic = topic
        self.envelope = envelope
        if data is None and envelope is not None and isinstance(envelope.data, Mapping):
            data = envelope.data
        self.data: Mapping[str, Any] = {} if data is None else data
        if request_id is None and envelope is not None:
            request_id = envelope.request_id
        self.request_id = request_id


class SendQueueFullError(TempestWSError):
    """The client's offline queue is full and it was built with ``queue_overflow="raise"``."""
