"""The JSON envelope every frame uses, and the wire constants.

Every frame in either direction is a JSON object ``{"type": str, "data": any,
"request_id": str | null}``. ``encode_envelope`` turns an envelope (model or plain dict)
into the one string sent to every recipient; ``decode_envelope`` parses an inbound frame
and raises [`EnvelopeError`][tempest_ws.exceptions.EnvelopeError] with a machine-readable ``code``
when it is not an envelope. orjson is used when installed (the ``fast`` extra); the
standard library's json otherwise, with identical output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tempest_ws.exceptions import EnvelopeError, UnencodableMessageError

__all__ = [
    "ACK",
    "AUTH_REFRESH",
    "ERROR",
    "HELLO",
    "PING",
    "PING_FRAME",
    "PONG",
    "PRESENCE_GET",
    "RECEIPT",
    "RECOVERY",
    "RESERVED_TYPES",
    "RESYNC",
    "SUBSCRIBE",
    "TYPING",
    "UNSUBSCRIBE",
    "EnvelopeLike",
    "WSEnvelope",
    "decode_envelope",
    "decode_frame",
    "encode_envelope",
    "error_envelope",
    "json_depth_exceeds",
    "parse_json",
]

HELLO: Final = "hello"
"""The first envelope the server sends on every connection (``docs/lifecycle.md``)."""
PING: Final = "ping"
"""A heartbeat: the server sends it, and a client may send one to measure a round trip."""
PONG: Final = "pong"
"""The answer to a ``ping``, with the ping's ``request_id``."""
ERROR: Final = "error"
"""An error envelope: ``data`` holds a machine-readable ``code`` and a ``message``."""
ACK: Final = "ack"
"""What a request achieved, with the request's ``request_id``."""
RESYNC: Final = "resync"
"""Server to client: messages may have been lost; reload state."""
SUBSCRIBE: Final = "subscribe"
"""The built-in operation that subscribes the connection to a topic."""
UNSUBSCRIBE: Final = "unsubscribe"
"""The built-in operation that unsubscribes the connection from a topic."""
PRESENCE_GET: Final = "presence.get"
"""Built-in: the users in a topic the caller is subscribed to."""
TYPING: Final = "typing"
"""Built-in: a typing indicator, relayed to the topic's other members, never stored."""
RECEIPT: Final = "receipt"
"""Built-in: a message receipt (message id + status), relayed to the topic's members."""
AUTH_REFRESH: Final = "auth.refresh"
"""Client to server: replace the connection's token before it expires."""
RECOVERY: Final = "recovery"
"""The answer to a ``subscribe`` on a topic that keeps history (``docs/history.md``)."""
RESERVED_TYPES: Final = frozenset({HELLO, PING, PONG, ERROR, ACK, RESYNC, AUTH_REFRESH, RECOVERY})
"""Types the router and clients use themselves."""

MAX_TYPE_LENGTH: Final = 128
MAX_REQUEST_ID_LENGTH: Final = 128


class WSEnvelope(BaseModel):
    """One message: ``type`` says what it is, ``data`` carries it, ``request_id`` correlates.

    Unknown top-level keys are ignored so newer peers can add fields without breaking
    older ones.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(min_length=1, max_length=MAX_TYPE_LENGTH)
    data: Any = Field(default_factory=dict)
    request_id: str | None = Field(default=None, max_length=MAX_REQUEST_ID_LENGTH)


EnvelopeLike = WSEnvelope | Mapping[str, Any]
"""What the hub accepts: a `WSEnvelope` or a plain mapping with at least ``type``."""


def _json_dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_dumps: Callable[[Mapping[str, Any]], str] = _json_dumps
_loads: Callable[[str | bytes], Any] = json.loads
try:  # optional speed-up with identical output
    import orjson
except ImportError:  # pragma: no cover - exercised when the extra is absent
    pass
else:

    def _orjson_dumps(value: Mapping[str, Any]) -> str:
        return orjson.dumps(value).decode()

    _dumps = _orjson_dumps
    _loads = orjson.loads


def encode_envelope(envelope: EnvelopeLike) -> str:
    """Serialize ``envelope`` once into the text frame sent to every recipient.

    A mapping must have a non-empty string ``type``; ``data`` defaults to ``{}`` and
    ``request_id`` to ``None``.

    Raises:
        EnvelopeError: a mapping without a non-empty string ``type``
            (``invalid_envelope``).
        UnencodableMessageError: ``data`` JSON cannot represent (a ``TypeError``): an
            unsupported type, a non-string key, or nesting past the encoder's limit.
    """
    if isinstance(envelope, WSEnvelope):
        body: Mapping[str, Any] = {
            "type": envelope.type,
            "data": envelope.data,
            "request_id": envelope.request_id,
        }
    else:
        kind = envelope.get("type")
        if not isinstance(kind, str) or not kind:
            raise EnvelopeError("envelope needs a non-empty string 'type'", code="invalid_envelope")
        body = {
            "type": kind,
            "data": envelope.get("data", {}),
            "request_id": envelope.get("request_id"),
        }
    try:
        return _dumps(body)
    except (TypeError, ValueError, RecursionError) as exc:
        kind = str(body["type"])
        raise UnencodableMessageError(
            f"envelope {kind[:64]!r} has data JSON cannot encode: {exc}", message_type=kind
        ) from None


def decode_envelope(frame: str | bytes, *, max_depth: int | None = None) -> WSEnvelope:
    """Parse one inbound frame into a `WSEnvelope`.

    Raises `EnvelopeError` with ``code`` ``invalid_json`` (not JSON),
    ``json_too_deep`` (objects and arrays nested deeper than ``max_depth``, when given),
    ``invalid_envelope`` (JSON but not an object with a string ``type``).
    """
    return decode_frame(frame, max_depth=max_depth)[0]


def json_depth_exceeds(frame: str | bytes, value: Any, limit: int) -> bool:
    """Whether objects and arrays in ``value`` (parsed from ``frame``) nest deeper than
    ``limit``; the outermost container is level 1, scalars add no level.

    Cheap for the frames that matter: a frame with no more than ``limit`` opening
    brackets cannot nest deeper, and counting them is two C-speed scans of the text
    (brackets inside strings only make the count larger, never a false refusal). Only
    a frame with more brackets is walked, one level at a time (no recursion, whatever
    the depth; the cost follows the number of containers, as parsing does).
    """
    if isinstance(frame, str):
        if frame.count("{") + frame.count("[") <= limit:
            return False
    elif frame.count(b"{") + frame.count(b"[") <= limit:
        return False
    level: list[Any] = [value]
    depth = 1
    while level:
        # Exact types: parsed JSON holds no container other than dict and list.
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
        if level and depth >= limit:
            return True
        depth += 1
    return False


def parse_json(frame: str | bytes, *, max_depth: int | None = None) -> Any:
    """The JSON value of ``frame``, whatever it is (an envelope is checked elsewhere).

    Raises `EnvelopeError` with ``code`` ``invalid_json`` (not JSON) or
    ``json_too_deep`` (objects and arrays nested deeper than ``max_depth``, when given).
    """
    try:
        value = _loads(frame)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise EnvelopeError("frame is not valid JSON", code="invalid_json") from None
    if (
        max_depth is not None
        and isinstance(value, dict | list)
        and json_depth_exceeds(frame, value, max_depth)
    ):
        raise EnvelopeError(f"JSON nested deeper than {max_depth} levels", code="json_too_deep")
    return value


def decode_frame(
    frame: str | bytes, *, max_depth: int | None = None
) -> tuple[WSEnvelope, dict[str, Any]]:
    """Like `decode_envelope()`, with the parsed JSON object as well.

    The object keeps the top-level keys the envelope ignores (a history message's
    ``topic``/``offset``/``epoch``), so a frame is parsed once. Raises as
    `decode_envelope()` does.
    """
    value = parse_json(frame, max_depth=max_depth)
    if not isinstance(value, dict):
        raise EnvelopeError("envelope must be a JSON object", code="invalid_envelope")
    try:
        return WSEnvelope.model_validate(value), value
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in exc.errors())
        request_id = value.get("request_id")
        if not isinstance(request_id, str) or len(request_id) > MAX_REQUEST_ID_LENGTH:
            request_id = None
        raise EnvelopeError(
            f"invalid envelope field(s): {fields}", code="invalid_envelope", request_id=request_id
        ) from None


def error_envelope(code: str, message: str, *, request_id: str | None = None) -> str:
    """Return the serialized ``error`` envelope sent for a rejected inbound frame."""
    return _dumps(
        {"type": ERROR, "data": {"code": code, "message": message}, "request_id": request_id}
    )


PING_FRAME: Final = _dumps({"type": PING, "data": {}, "request_id": None})
"""The heartbeat frame, serialized once."""
