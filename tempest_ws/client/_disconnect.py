"""Why a connection ended or an attempt failed, as one value.

A `Disconnect` is what the reconnect policy decides on, what the ``on_disconnect`` and
``is_fatal`` hooks receive and what [`ClientGaveUpError`][tempest_ws.exceptions.ClientGaveUpError]
carries. It imports nothing of the client, so ``tempest_ws.exceptions`` can name it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

from tempest_ws.wire.codes import CloseCode

__all__ = ["Disconnect", "retry_after"]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Why a connection ended or an attempt failed.

    Given to the ``on_disconnect`` hook and to the ``is_fatal`` hook.

    Attributes:
        code: the close code (sent by the server, or by this client when it closed the
            socket itself: 1000 on ``close()``, 4408 when the server fell silent);
            ``None`` when no WebSocket was opened.
        reason: the close reason, if any.
        error: the exception of a failed attempt (token provider or handshake).
        http_status: the HTTP status when the server refused the handshake.
        stage: ``"url"`` (the URL function raised), ``"token"`` (the token provider
            raised), ``"connect"`` (TCP or handshake failed, or the URL function returned
            an invalid URL) or ``"session"`` (an open connection closed).
        by_user: the application called ``close()``.
        established: the connection got as far as the server's ``hello`` (raw mode: the
            handshake), that is, the token was accepted.
        uptime: seconds the connection was open (0 for a failed attempt).
        retry_after: the seconds a refused handshake's ``Retry-After`` header asked for
            (HTTP 429/503 from a busy server), else ``None``.
    """

    code: int | None = None
    reason: str = ""
    error: BaseException | None = None
    http_status: int | None = None
    stage: Literal["url", "token", "connect", "session"] = "session"
    by_user: bool = False
    established: bool = False
    uptime: float = 0.0
    retry_after: float | None = None

    @property
    def unauthorized(self) -> bool:
        """The server refused the credentials (close 4401 or HTTP 401)."""
        return self.code == CloseCode.UNAUTHORIZED or self.http_status == HTTPStatus.UNAUTHORIZED

    def describe(self) -> str:
        """A short text for logs and exceptions (never a token or a message body)."""
        if self.code is not None:
            try:
                name = CloseCode(self.code).name
            except ValueError:
                name = "unknown"
            return f"close {self.code} ({name})"
        if self.http_status is not None:
            hint = _STATUS_HINTS.get(self.http_status, "")
            return f"handshake refused with HTTP {self.http_status}{hint}"
        kind = type(self.error).__name__ if self.error is not None else "no error"
        return f"{self.stage} failed: {kind}"


_STATUS_HINTS: dict[int, str] = {
    HTTPStatus.FORBIDDEN: ": no WebSocket route answered at this URL (check the path), "
    "or the server refused this Origin",
    HTTPStatus.NOT_FOUND: ": nothing answered at this URL (check the path)",
    HTTPStatus.UNAUTHORIZED: ": the server refused the credentials",
}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds of a ``Retry-After: <seconds>`` header, ``None`` without one (an
    HTTP date, a negative or unreadable value counts as none)."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None
