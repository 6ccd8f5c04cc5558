"""Typed messages: one pydantic model per envelope ``type``, for each direction.

A `MessageRegistry` records what clients may send (*inbound*) and what the server
sends (*outbound*)::

    messages = MessageRegistry()

    @messages.inbound("chat.send")
    class ChatSend(BaseModel):
        room: str
        text: str

    @messages.outbound("chat.message")
    class ChatMessage(BaseModel):
        room: str
        sender: str
        text: str

`MessageRegistry.parse()` turns an inbound envelope into its validated model, or
raises [`EnvelopeError`][tempest_ws.exceptions.EnvelopeError] with ``code`` ``unknown_type`` or
``invalid_data``; the error's ``reason`` names the offending field paths and never
repeats the payload, so it can go back to the client in an ``error`` envelope as is.
`MessageRegistry.envelope()` builds the outbound envelope for a model instance. The
same registry feeds
[`tempest_ws.asyncapi.asyncapi_document()`][tempest_ws.asyncapi._document.asyncapi_document].

Pure code: nothing here touches a socket.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, PydanticUserError, ValidationError

from tempest_ws.exceptions import ConfigurationError, EnvelopeError
from tempest_ws.wire.envelope import MAX_TYPE_LENGTH, RESERVED_TYPES, WSEnvelope, decode_envelope

__all__ = [
    "INVALID_DATA",
    "TOPIC_LIMIT",
    "UNKNOWN_TYPE",
    "Direction",
    "MessageRegistry",
    "RegisteredMessage",
    "describe_validation_error",
]

ModelT = TypeVar("ModelT", bound=BaseModel)

Direction = Literal["inbound", "outbound"]
"""``inbound``: clients send it to the server; ``outbound``: the server sends it."""

UNKNOWN_TYPE: Final = "unknown_type"
"""Error code: no inbound model is registered for the envelope's ``type``."""

INVALID_DATA: Final = "invalid_data"
"""Error code: the envelope's ``data`` does not validate against its model."""

TOPIC_LIMIT: Final = "topic_limit"
"""Error code: a ``subscribe`` past ``WS_MAX_TOPICS_PER_CONNECTION`` (nothing subscribed)."""

_MAX_REPORTED_ERRORS = 5
_MAX_SHOWN_TYPE = 64
_HIDDEN_SEGMENT = "*"


@dataclass(frozen=True, slots=True)
class RegisteredMessage:
    """One registration: the envelope ``type``, its direction, model and summary.

    Attributes:
        message_type: the envelope's ``type`` string.
        direction: ``"inbound"`` (client to server) or ``"outbound"`` (server to client).
        model: the pydantic model of the envelope's ``data``.
        summary: a one-line summary for generated docs; defaults to the first line of the
            model's docstring.
    """

    message_type: str
    direction: Direction
    model: type[BaseModel]
    summary: str | None = None


def _first_doc_line(model: type[BaseModel]) -> str | None:
    doc = model.__doc__
    if not doc or doc is BaseModel.__doc__:
        return None
    line = doc.strip().splitlines()[0].strip()
    return line or None


@functools.lru_cache(maxsize=512)
def _field_names(model: type[BaseModel]) -> frozenset[str]:
    """Every property name (field name or alias) of ``model`` and the models it nests."""
    names: set[str] = set(model.model_fields)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                names.update(k for k in properties if isinstance(k, str))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    # A type without a JSON schema leaves the top-level field names only.
    with contextlib.suppress(PydanticUserError):
        walk(model.model_json_schema(mode="validation"))
    return frozenset(names)


def _location(loc: tuple[int | str, ...], known: frozenset[str]) -> str:
    # Field names are the model's; any other string in a location (a dict key, an
    # unexpected key under extra="forbid") came from the client and is hidden.
    parts = ["data"]
    for segment in loc:
        if isinstance(segment, int):
            parts.append(str(segment))
        else:
            parts.append(segment if segment in known else _HIDDEN_SEGMENT)
    return ".".join(parts)


def describe_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """A short, payload-free summary of ``exc``: field paths and pydantic error types.

    At most five errors are listed (``data.room: missing, data.text: string_type``) and
    a count of the rest. Path segments that are not field names or aliases of ``model``
    (or of the models it nests) are client data, such as dict keys, and show as ``*``;
    without ``model`` every string segment does. Error messages and input values are
    left out on purpose: a custom validator's message may quote the input.
    """
    known = _field_names(model) if model is not None else frozenset()
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    shown = [
        f"{_location(tuple(e['loc']), known)}: {e['type']}" for e in errors[:_MAX_REPORTED_ERRORS]
    ]
    more = len(errors) - len(shown)
    suffix = f" (+{more} more)" if more > 0 else ""
    return "invalid data: " + ", ".join(shown) + suffix


class MessageRegistry:
    """The envelope types an endpoint speaks, each with the pydantic model of its ``data``.

    Register with the decorators `inbound()` and `outbound()` (or call them with
    the class: ``messages.inbound("x")(Model)``). A ``type`` may be registered once per
    direction; registering the same class again is a no-op, another class raises
    [`ConfigurationError`][tempest_ws.exceptions.ConfigurationError]. The router's own types
    (``hello``, ``ping``, ``pong``, ``error``, ``ack``, ``resync``) cannot be registered.

    The registry holds no connection state: share one across routers and processes.
    """

    def __init__(self) -> None:
        self._inbound: dict[str, RegisteredMessage] = {}
        self._outbound: dict[str, RegisteredMessage] = {}
        self._revision = 0

    def __repr__(self) -> str:
        return f"<MessageRegistry inbound={len(self._inbound)} outbound={len(self._outbound)}>"

    # -- registration ------------------------------------------------------------------

    def inbound(
        self, message_type: str, /, *, summary: str | None = None
    ) -> Callable[[type[ModelT]], type[ModelT]]:
        """Decorator: clients send ``message_type`` envelopes whose ``data`` is this model.

        Raises:
            ConfigurationError: ``message_type`` is empty, too long, reserved, or already
                registered inbound with another model; or the class is not a pydantic
                model.
        """
        return self._register("inbound", message_type, summary)

    def outbound(
        self, message_type: str, /, *, summary: str | None = None
    ) -> Callable[[type[ModelT]], type[ModelT]]:
        """Decorator: the server sends ``message_type`` envelopes whose ``data`` is this model.

        One model may serve several outbound types; `envelope()` then needs the
        ``message_type`` argument.

        Raises:
            ConfigurationError: as for `inbound()`.
        """
        return self._register("outbound", message_type, summary)

    def _register(
        self, direction: Direction, message_type: str, summary: str | None
    ) -> Callable[[type[ModelT]], type[ModelT]]:
        if not isinstance(message_type, str) or not message_type:
            raise ConfigurationError("a message type must be a non-empty string")
        if len(message_type) > MAX_TYPE_LENGTH:
            raise ConfigurationError(f"a message type has at most {MAX_TYPE_LENGTH} characters")
        if message_type in RESERVED_TYPES:
            raise ConfigurationError(
                f"{message_type!r} is a built-in envelope type and cannot be registered"
            )
        table = self._inbound if direction == "inbound" else self._outbound

        def register(model: type[ModelT]) -> type[ModelT]:
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigurationError(
                    f"{direction} message {message_type!r} needs a pydantic BaseModel class"
                )
            existing = table.get(message_type)
            if existing is not None:
                if existing.model is model:
                    return model
                raise ConfigurationError(
                    f"{direction} message {message_type!r} is already registered "
                    f"with {existing.model.__qualname__}"
                )
            table[message_type] = RegisteredMessage(
                message_type, direction, model, summary or _first_doc_line(model)
            )
            self._revision += 1
            return model

        return register

    # -- lookup ------------------------------------------------------------------------

    @property
    def inbound_types(self) -> Mapping[str, type[BaseModel]]:
        """Read-only view: inbound ``type`` to model, in registration order."""
        return MappingProxyType({t: m.model for t, m in self._inbound.items()})

    @property
    def outbound_types(self) -> Mapping[str, type[BaseModel]]:
        """Read-only view: outbound ``type`` to model, in registration order."""
        return MappingProxyType({t: m.model for t, m in self._outbound.items()})

    @property
    def revision(self) -> int:
        """A counter that grows with every registration (for caching derived documents)."""
        return self._revision

    def registrations(self, direction: Direction | None = None) -> Iterator[RegisteredMessage]:
        """Every registration (inbound first), or those of one ``direction``."""
        if direction in (None, "inbound"):
            yield from self._inbound.values()
        if direction in (None, "outbound"):
            yield from self._outbound.values()

    def accepts(self, message_type: str) -> bool:
        """Whether an inbound model is registered for ``message_type``."""
        return message_type in self._inbound

    # -- inbound -----------------------------------------------------------------------

    def parse(self, envelope: WSEnvelope | Mapping[str, Any] | str | bytes) -> BaseModel:
        """Validate an inbound envelope's ``data`` against the model of its ``type``.

        ``envelope`` may be a [`WSEnvelope`][tempest_ws.wire.envelope.WSEnvelope], the mapping
        ``ws.receive_json()`` returns, or a raw frame. Returns the model instance; match
        on its class to dispatch. The envelope's ``request_id`` is not part of the result:
        keep the envelope to reply.

        Raises:
            EnvelopeError: ``code`` is ``unknown_type`` when no inbound model is registered
                for the type (outbound-only types included), ``invalid_data`` when
                ``data`` does not validate (the reason lists at most five field paths and
                error types, never values), or ``invalid_json``/``invalid_envelope`` when
                a raw frame or mapping is not an envelope at all.
        """
        if isinstance(envelope, str | bytes):
            envelope = decode_envelope(envelope)
        elif not isinstance(envelope, WSEnvelope):
            try:
                envelope = WSEnvelope.model_validate(envelope)
            except ValidationError:
                raise EnvelopeError(
                    "envelope needs a non-empty string 'type'", code="invalid_envelope"
                ) from None
        registered = self._inbound.get(envelope.type)
        if registered is None:
            shown = envelope.type[:_MAX_SHOWN_TYPE]
            raise EnvelopeError(f"unknown message type {shown!r}", code=UNKNOWN_TYPE)
        try:
            return registered.model.model_validate(envelope.data)
        except ValidationError as exc:
            reason = describe_validation_error(exc, registered.model)
            raise EnvelopeError(reason, code=INVALID_DATA) from None

    # -- outbound ----------------------------------------------------------------------

    def envelope(
        self,
        message: BaseModel,
        *,
        request_id: str | None = None,
        message_type: str | None = None,
    ) -> WSEnvelope:
        """Build the outbound envelope for ``message``, ready for the hub or a connection.

        The ``type`` is the one ``message``'s class (or its nearest registered base class)
        was registered under; give ``message_type`` when the class serves several types.
        ``data`` is ``message.model_dump(mode="json", by_alias=True)``, the shape the
        generated AsyncAPI document describes. Pass the inbound envelope's ``request_id``
        to answer a request.

        Raises:
            ConfigurationError: the class is not registered as outbound, serves several
                types and none was chosen, or ``message_type`` is registered with an
                unrelated model.
        """
        chosen = self._outbound_type(type(message), message_type)
        return WSEnvelope(
            type=chosen,
            data=message.model_dump(mode="json", by_alias=True),
            request_id=request_id,
        )

    def _outbound_type(self, cls: type[BaseModel], message_type: str | None) -> str:
        if message_type is not None:
            registered = self._outbound.get(message_type)
            if registered is None:
                raise ConfigurationError(f"no outbound message {message_type!r} is registered")
            if not issubclass(cls, registered.model):
                raise ConfigurationError(
                    f"outbound message {message_type!r} takes {registered.model.__qualname__}, "
                    f"not {cls.__qualname__}"
                )
            return message_type
        for klass in cls.__mro__:
            found = [t for t, m in self._outbound.items() if m.model is klass]
            if len(found) == 1:
                return found[0]
            if found:
                raise ConfigurationError(
                    f"{cls.__qualname__} is registered for outbound types {found}; "
                    "pass message_type"
                )
        raise ConfigurationError(f"{cls.__qualname__} is not registered as an outbound message")
