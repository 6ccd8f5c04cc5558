"""Built-in operations and typed validation, run by the session before the handler.

``make_websocket_router(builtins=..., messages=...)`` builds one `Inbound`. The
session asks it about every decoded envelope that is not a heartbeat or ``auth.refresh``:

- a built-in type (``subscribe``, ``unsubscribe``, ``presence.get``, ``typing``,
  ``receipt``) is answered here with an ``ack`` or an ``error`` carrying the request's
  ``request_id``, and never reaches the handler. On a topic that keeps history, the
  ``subscribe`` ack is followed by the replay from the ``offset``/``epoch`` it carries
  and a ``recovery`` envelope (``docs/history.md``);
- with a ``messages`` registry, every other type must be registered inbound and its
  ``data`` must validate (else ``unknown_type`` / ``invalid_data``); the validated model
  travels with the frame to the handler
  ([`tempest_ws.realtime.receive_envelope()`][tempest_ws.router.realtime.receive_envelope]).

Malformed ``data`` counts toward the connection's invalid frames (1008 past the limit);
a refused subscription or an operation on a topic the caller is not in does not: those
are answers, not abuse. Everything relayed was validated to re-encode as JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from tempest_ws.exceptions import BackplaneError, TopicLimitError
from tempest_ws.history.base import MAX_EPOCH_LENGTH, Position
from tempest_ws.hub._membership import MAX_TOPIC_LENGTH
from tempest_ws.observe._audit import security_event
from tempest_ws.router.realtime import PRESENCE_GET, RECEIPT, TYPING, error_reply, reply_envelope
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import SUBSCRIBE, UNSUBSCRIBE, WSEnvelope, encode_envelope
from tempest_ws.wire.messages import (
    INVALID_DATA,
    TOPIC_LIMIT,
    MessageRegistry,
    describe_validation_error,
)

if TYPE_CHECKING:
    from tempest_ws.hub._connection import WebSocketConnection
    from tempest_ws.hub._hub import WebSocketHub
    from tempest_ws.router.events._dispatch import EventDispatch

__all__ = ["BUILTIN", "EVENT", "MAX_CONNECT_TOPICS", "UNKNOWN", "Inbound"]

logger = logging.getLogger("tempest_ws.session")

MAX_CONNECT_TOPICS: Final = 32
"""Topics ``?topics=`` may name; the rest are refused with ``too_many_topics``."""

FORBIDDEN: Final = "forbidden"
NOT_SUBSCRIBED: Final = "not_subscribed"
PRESENCE_DISABLED: Final = "presence_disabled"
UNAVAILABLE: Final = "unavailable"
TOO_MANY_TOPICS: Final = "too_many_topics"


def _encodable(value: str) -> str:
    value.encode()  # a lone surrogate raises UnicodeEncodeError, a ValueError
    return value


TopicName = Annotated[
    str, Field(min_length=1, max_length=MAX_TOPIC_LENGTH), AfterValidator(_encodable)
]
MessageId = (
    Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_encodable)]
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
)


class TopicData(BaseModel):
    """``data`` of ``subscribe``, ``unsubscribe`` and ``presence.get``."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    topic: TopicName


class SubscribeData(TopicData):
    """``data`` of ``subscribe``: a topic, and where a client resumes its history from
    (both ``offset`` and ``epoch``, or neither)."""

    offset: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    epoch: Annotated[str, Field(min_length=1, max_length=MAX_EPOCH_LENGTH)] | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> SubscribeData:
        if (self.offset is None) != (self.epoch is None):
            raise ValueError("offset and epoch go together")
        return self

    @property
    def position(self) -> Position | None:
        """The position to resume from, ``None`` for a first subscription."""
        if self.offset is None or self.epoch is None:
            return None
        return Position(self.offset, self.epoch)


class TypingData(TopicData):
    """``data`` of ``typing``."""

    typing: bool = True


class ReceiptData(TopicData):
    """``data`` of ``receipt``."""

    message_id: MessageId
    status: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,31}$")]


_MODELS: Final[dict[str, type[TopicData]]] = {
    SUBSCRIBE: SubscribeData,
    UNSUBSCRIBE: TopicData,
    PRESENCE_GET: TopicData,
    TYPING: TypingData,
    RECEIPT: ReceiptData,
}


BUILTIN: Final = "builtin"
EVENT: Final = "event"
UNKNOWN: Final = "unknown"


class Inbound:
    """What the session does with an envelope before the handler (module docstring)."""

    def __init__(
        self,
        hub: WebSocketHub,
        *,
        operations: Iterable[str] = (),
        messages: MessageRegistry | None = None,
        events: EventDispatch | None = None,
    ) -> None:
        self.hub = hub
        self.operations = frozenset(operations)
        self.messages = messages
        self.events = events

    def claims(self, envelope: WSEnvelope) -> bool:
        """Whether ``envelope`` is a built-in operation or an event answered here."""
        if envelope.type in self.operations:
            return True
        return self.events is not None and self.events.claims(envelope)

    def kind_of(self, envelope: WSEnvelope) -> str:
        """What answers a claimed ``envelope``, for tracing: ``builtin`` (an operation),
        ``event`` (an event handler) or `UNKNOWN` (the event dispatch refuses it)."""
        if envelope.type in self.operations:
            return BUILTIN
        if self.events is not None and self.events.registry.get(envelope.type) is not None:
            return EVENT
        return UNKNOWN

    def parse(self, envelope: WSEnvelope) -> BaseModel | None:
        """The validated model of a handler-bound envelope (``None`` without a registry).

        Raises:
            EnvelopeError: ``unknown_type`` or ``invalid_data``.
        """
        return None if self.messages is None else self.messages.parse(envelope)

    def run(
        self, connection: WebSocketConnection, envelope: WSEnvelope
    ) -> Coroutine[Any, Any, bool]:
        """Answer one built-in operation, or queue an event for its handler (see
        [`EventDispatch`][tempest_ws.router.events._dispatch.EventDispatch]); ``False``
        when its ``data`` was malformed. (A plain function: an event makes no coroutine
        here besides the dispatch's own.)"""
        if self.events is not None and envelope.type not in self.operations:
            return self.events.run(connection, envelope)
        return self._operate(connection, envelope)

    async def _operate(self, connection: WebSocketConnection, envelope: WSEnvelope) -> bool:
        model = _MODELS[envelope.type]
        try:
            data = model.model_validate(envelope.data)
        except ValidationError as exc:
            security_event(
                "invalid_frame", connection.connection_id, "invalid frame", code=INVALID_DATA
            )
            reason = describe_validation_error(exc, model)
            self._send(connection, error_reply(envelope, INVALID_DATA, reason))
            return False
        if isinstance(data, SubscribeData):
            await self._subscribe(connection, envelope, data.topic, data.position)
        elif envelope.type == UNSUBSCRIBE:
            await self.hub.unsubscribe(connection.connection_id, data.topic)
            self._ack(connection, envelope, UNSUBSCRIBE, topic=data.topic)
        elif not self._member(connection, envelope, data.topic):
            pass
        elif isinstance(data, TypingData):
            relayed: dict[str, Any] = {"typing": data.typing}
            await self._relay(connection, envelope, data.topic, relayed, exclude_self=True)
        elif isinstance(data, ReceiptData):
            relayed = {"message_id": data.message_id, "status": data.status}
            await self._relay(connection, envelope, data.topic, relayed, exclude_self=False)
        else:
            await self._presence(connection, envelope, data.topic)
        return True

    async def connect_topics(self, connection: WebSocketConnection, values: list[str]) -> None:
        """Subscribe the topics of ``?topics=a,b`` (repeatable), each answered like a
        ``subscribe`` without a ``request_id``."""
        topics = list(dict.fromkeys(t for value in values for t in value.split(",") if t))
        for topic in topics[:MAX_CONNECT_TOPICS]:
            if connection.closing:
                return
            try:
                TopicData.model_validate({"topic": topic})
            except ValidationError as exc:
                reason = describe_validation_error(exc, TopicData)
                self._send(connection, error_reply(None, INVALID_DATA, reason))
                continue
            await self._subscribe(connection, None, topic)
        if len(topics) > MAX_CONNECT_TOPICS:
            refused = f"at most {MAX_CONNECT_TOPICS} topics at connect time"
            self._send(connection, error_reply(None, TOO_MANY_TOPICS, refused))

    # -- the operations ----------------------------------------------------------------

    async def _subscribe(
        self,
        connection: WebSocketConnection,
        request: WSEnvelope | None,
        topic: str,
        position: Position | None = None,
    ) -> None:
        """Subscribe; the ack is queued by the hub once subscribed, before any replay."""
        ack = reply_envelope(request, {"type": SUBSCRIBE, "topic": topic})
        request_id = None if request is None else request.request_id
        try:
            joined = await self.hub.subscribe_with_ack(
                connection.connection_id, topic, ack, position=position, request_id=request_id
            )
        except TopicLimitError as exc:
            self._send(connection, error_reply(request, TOPIC_LIMIT, exc.reason, topic=topic))
            return
        if joined:
            return
        if not connection.closing:
            refused = "subscription to this topic is not allowed"
            self._send(connection, error_reply(request, FORBIDDEN, refused, topic=topic))

    def _member(self, connection: WebSocketConnection, request: WSEnvelope, topic: str) -> bool:
        if topic in connection.topics:
            return True
        refused = f"{request.type} needs a subscription to the topic"
        self._send(connection, error_reply(request, NOT_SUBSCRIBED, refused, topic=topic))
        return False

    async def _relay(
        self,
        connection: WebSocketConnection,
        request: WSEnvelope,
        topic: str,
        fields: dict[str, Any],
        *,
        exclude_self: bool,
    ) -> None:
        """Send to the topic's other members: typing skips every tab of the sender, a
        receipt only the sending connection (the user's other tabs learn it was read)."""
        relayed = {"topic": topic, "user_id": connection.user_key, **fields}
        try:
            await self.hub.broadcast(
                {"type": request.type, "data": relayed},
                topic=topic,
                exclude=None if exclude_self else connection.connection_id,
                exclude_users=connection.user_key if exclude_self else None,
                ephemeral=True,
            )
        except BackplaneError:
            reached = "delivered to this server's members only"
            self._send(connection, error_reply(request, UNAVAILABLE, reached, topic=topic))
            return
        self._ack(connection, request, request.type, topic=topic)

    async def _presence(
        self, connection: WebSocketConnection, request: WSEnvelope, topic: str
    ) -> None:
        if not await self.hub.authorize(connection, topic):  # asked again: rights change
            refused = "presence of this topic is not allowed"
            self._send(connection, error_reply(request, FORBIDDEN, refused, topic=topic))
            return
        if not self.hub.keeps_presence(topic):
            refused = "this server keeps no presence for the topic"
            self._send(connection, error_reply(request, PRESENCE_DISABLED, refused, topic=topic))
            return
        try:
            users = await self.hub.presence(topic)
        except BackplaneError:
            failed = "the presence registry is unreachable"
            self._send(connection, error_reply(request, UNAVAILABLE, failed, topic=topic))
            return
        self._ack(connection, request, PRESENCE_GET, topic=topic, users=sorted(users))

    # -- answers -----------------------------------------------------------------------

    def _ack(
        self,
        connection: WebSocketConnection,
        request: WSEnvelope | None,
        operation: str,
        **fields: Any,
    ) -> None:
        """``{"type": "ack", "data": {"type": operation, ...}, "request_id": ...}``."""
        self._send(connection, reply_envelope(request, {"type": operation, **fields}))

    @staticmethod
    def _send(connection: WebSocketConnection, envelope: WSEnvelope) -> None:
        if not connection.enqueue(encode_envelope(envelope)) and not connection.closing:
            cid = connection.connection_id
            security_event("slow_consumer", cid, "send queue full at a built-in answer")
            connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
