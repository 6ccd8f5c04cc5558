"""The answer to a request: an envelope that carries the request's ``request_id``.

The router's built-in operations, the event handlers and ``hub.reply`` /
``hub.reply_error`` answer with these; ``tempest_ws.realtime`` exports them for an
application's own handlers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tempest_ws.wire.envelope import ACK, ERROR, EnvelopeLike, WSEnvelope

__all__ = ["error_reply", "reply_envelope"]


def _request_id(request: EnvelopeLike | None) -> str | None:
    if request is None:
        return None
    value = request.request_id if isinstance(request, WSEnvelope) else request.get("request_id")
    return value if isinstance(value, str) else None


def reply_envelope(
    request: EnvelopeLike | None, data: Any = None, *, message_type: str = ACK
) -> WSEnvelope:
    """The answer to ``request``: ``{"type": message_type, "data": data, "request_id":
    <the request's>}``.

    ``data`` may be a pydantic model (dumped in JSON mode, by alias) or anything JSON can
    encode; ``None`` becomes ``{}``. A request without a ``request_id`` gets a reply with
    ``null`` (the client cannot correlate it, but still receives it).
    """
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", by_alias=True)
    return WSEnvelope(
        type=message_type, data={} if data is None else data, request_id=_request_id(request)
    )


def error_reply(
    request: EnvelopeLike | None, code: str, message: str, **details: Any
) -> WSEnvelope:
    """The ``error`` envelope answering ``request``: ``data`` is ``{"code", "message"}``
    plus ``details`` (never put a token or a message body there)."""
    return WSEnvelope(
        type=ERROR,
        data={"code": code, "message": message, **details},
        request_id=_request_id(request),
    )
