"""What to do with one inbound frame: a pure function, no socket, no clock of its own.

`judge()` takes one ``websocket.receive`` message and returns a `Verdict`, or an
`Invalid` naming the error envelope to answer with. In order, a frame

1. spends a token from the connection's bucket (ping and pong envelopes included):
   none left is `Verdict.RATE_LIMITED` (closed 4429);
2. is the pong every tempest_ws client sends, byte for byte: `Verdict.PONG`, known
   without decoding it;
3. is over ``max_message_bytes``: `Verdict.TOO_BIG` (closed 1009);
4. is binary: `Verdict.DELIVER` with ``accept_binary``, else invalid;
5. is decoded (an envelope, within ``max_json_depth``), else invalid; then it is a
   ``pong`` (`Verdict.PONG`), a ``ping`` (`Verdict.PING`), an ``auth.refresh``
   (`Verdict.REFRESH`), a built-in operation the router answers
   (`Verdict.BUILTIN`), a typed message whose ``data`` does not validate (invalid),
   or `Verdict.DELIVER`.

The only writes are to the bucket and to the message itself: a decoded frame carries
its envelope under ``ENVELOPE_KEY`` (and, for the handler, its parsed JSON under
``JSON_KEY`` and its validated model under ``MODEL_KEY``), so nothing is parsed twice
and a verdict is one enum member, with nothing made per frame. The session
([`tempest_ws.router._session`][tempest_ws.router._session]) acts on the verdict.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Protocol

from pydantic import BaseModel

from tempest_ws._types import Message
from tempest_ws.exceptions import EnvelopeError
from tempest_ws.router._expiry import AUTH_REFRESH
from tempest_ws.router.realtime import ENVELOPE_KEY, JSON_KEY, MODEL_KEY
from tempest_ws.wire.envelope import PING, PONG, WSEnvelope, decode_frame, encode_envelope

__all__ = [
    "PONG_FRAME",
    "Invalid",
    "Rate",
    "SessionLimits",
    "Validator",
    "Verdict",
    "frame_size",
    "judge",
]

PONG_FRAME: Final = encode_envelope({"type": PONG, "data": {}, "request_id": None})
"""The pong every tempest_ws client sends, byte for byte: swallowed without decoding."""


class Verdict(enum.Enum):
    """What the session does with a frame (`Invalid` is the eighth answer)."""

    DELIVER = "deliver"
    """Into the handler's inbox."""
    PONG = "pong"
    """A heartbeat answer: nothing more to do."""
    PING = "ping"
    """Answer ``pong`` with the frame's ``request_id``."""
    REFRESH = "refresh"
    """An ``auth.refresh``: check the new token, ack or close 4401."""
    BUILTIN = "builtin"
    """A built-in operation the router answers itself."""
    RATE_LIMITED = "rate_limited"
    """Past the connection's rate limit: close 4429."""
    TOO_BIG = "too_big"
    """Over ``max_message_bytes``: close 1009."""


# Module constants: reading an enum member through its class costs a lookup per frame.
_DELIVER, _PONG, _PING, _REFRESH, _BUILTIN, _RATE_LIMITED, _TOO_BIG = Verdict


@dataclass(frozen=True, slots=True)
class Invalid:
    """A frame to answer with an ``error`` envelope, counted against ``max_invalid_frames``.

    Attributes:
        code: the error envelope's ``data.code`` (``invalid_json``, ``invalid_data``, …).
        reason: its ``data.message``.
        request_id: the frame's ``request_id``, when one could be read.
        envelope: the decoded envelope, when the frame decoded.
    """

    code: str
    reason: str
    request_id: str | None = None
    envelope: WSEnvelope | None = None


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Inbound limits the session enforces."""

    max_message_bytes: int
    accept_binary: bool
    max_invalid_frames: int
    heartbeat_seconds: float
    heartbeat_timeout: float
    max_json_depth: int = 32


class Rate(Protocol):
    """The connection's inbound budget (a ``TokenBucket``)."""

    def take(self) -> bool:
        """Spend one token: ``False`` when none is left."""
        ...


class Validator(Protocol):
    """The router's built-ins and typed messages (an ``Inbound``)."""

    def claims(self, envelope: WSEnvelope) -> bool:
        """Whether the router answers ``envelope`` itself."""
        ...

    def parse(self, envelope: WSEnvelope) -> BaseModel | None:
        """The validated model of ``envelope.data``; raises ``EnvelopeError``."""
        ...


def frame_size(message: Message, limit: int) -> int:
    """The frame's size in bytes, exact whenever it could exceed ``limit``."""
    text = message.get("text")
    if text is not None:
        # len(text) <= UTF-8 length <= 4 * len(text): encode only when it could matter.
        return len(text) if len(text) * 4 <= limit else len(text.encode())
    data = message.get("bytes")
    return len(data) if data is not None else 0


def judge(
    message: Message,
    limits: SessionLimits,
    bucket: Rate | None = None,
    validator: Validator | None = None,
) -> Verdict | Invalid:
    """The verdict on one ``websocket.receive`` message (see the module docstring)."""
    if bucket is not None and not bucket.take():
        return _RATE_LIMITED
    text = message.get("text")
    if text == PONG_FRAME:
        return _PONG
    if frame_size(message, limits.max_message_bytes) > limits.max_message_bytes:
        return _TOO_BIG
    if text is None:
        if limits.accept_binary:
            return _DELIVER
        return Invalid("binary_not_supported", "send JSON text frames")
    try:
        envelope, value = decode_frame(text, max_depth=limits.max_json_depth)
    except EnvelopeError as exc:
        return Invalid(str(exc.code), exc.reason, exc.request_id)
    message[ENVELOPE_KEY] = envelope
    kind = envelope.type
    if kind == PONG:
        return _PONG
    if kind == PING:
        return _PING
    if kind == AUTH_REFRESH:
        return _REFRESH
    if validator is not None:
        if validator.claims(envelope):
            return _BUILTIN
        try:
            message[MODEL_KEY] = validator.parse(envelope)
        except EnvelopeError as exc:
            return Invalid(str(exc.code), exc.reason, envelope.request_id, envelope)
    # The handler's receive_envelope() and receive_json() reuse what was parsed here.
    message[JSON_KEY] = value
    return _DELIVER
