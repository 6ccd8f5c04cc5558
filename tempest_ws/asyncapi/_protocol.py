"""The router's own protocol, as the AsyncAPI document lists it: envelopes and models.

Always there: ``hello``, ``ping``/``pong`` (both ways), ``error``, ``ack``, ``resync``,
``recovery`` and the client's ``auth.refresh``. With ``make_websocket_router(builtins=)``,
each enabled built-in operation is a message the server receives (``subscribe`` with
its optional ``offset``/``epoch``, ``unsubscribe``, ``presence.get``, ``typing``,
``receipt``); ``typing`` and ``receipt`` are relayed to the topic's members too, with
another ``data``. A hub with ``presence=`` sends ``presence.join``/``presence.leave``.
The inbound models are the ones the router validates with
([`tempest_ws.router._inbound`][tempest_ws.router._inbound]),
so the document cannot drift from what is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from tempest_ws.router._inbound import MessageId, ReceiptData, SubscribeData, TopicData, TypingData
from tempest_ws.router.realtime import PRESENCE_GET, PRESENCE_JOIN, PRESENCE_LEAVE, RECEIPT, TYPING
from tempest_ws.wire.envelope import (
    ACK,
    AUTH_REFRESH,
    ERROR,
    HELLO,
    PING,
    PONG,
    RECOVERY,
    RESYNC,
    SUBSCRIBE,
    UNSUBSCRIBE,
)

__all__ = ["ProtocolMessage", "protocol_messages"]

Action = Literal["send", "receive"]


class HelloData(BaseModel):
    """First frame on every accepted connection: its id and the server's cadence."""

    connection_id: str = Field(description="The id the hub and every server log record use.")
    heartbeat_seconds: float = Field(description="Seconds between ping envelopes.")
    heartbeat_timeout_seconds: float = Field(
        description="Silence after which the server closes 4408; any inbound frame counts."
    )
    max_message_bytes: int = Field(description="Largest inbound frame; larger ones close 1009.")


class HeartbeatData(BaseModel):
    """Empty: a ``ping`` or ``pong`` carries nothing but its optional ``request_id``."""

    model_config = ConfigDict(extra="allow")


class ErrorData(BaseModel):
    """Why an inbound frame or operation was rejected; the frame itself was dropped."""

    code: str = Field(
        description="Machine-readable: invalid_json, invalid_envelope, binary_not_supported, "
        "unknown_type, invalid_data, invalid_refresh; for built-in operations forbidden, "
        "not_subscribed, presence_disabled, unavailable, too_many_topics, topic_limit; or an "
        "application code."
    )
    message: str = Field(description="Human-readable; names fields, never repeats the payload.")
    topic: str | None = Field(
        default=None, description="The topic a refused built-in operation named."
    )


class AckData(BaseModel):
    """What a request achieved. The router's acks name the request's ``type`` and add
    what that operation reports; a handler's ``hub.reply`` carries its own ``data``."""

    model_config = ConfigDict(extra="allow")

    type: str | None = Field(
        default=None,
        description="The request answered: subscribe, unsubscribe, presence.get, typing, "
        "receipt or auth.refresh.",
    )
    topic: str | None = Field(default=None, description="The topic of a topic operation.")
    users: list[str] | None = Field(
        default=None, description="presence.get: ids of the users in the topic, sorted."
    )
    expires_at: float | None = Field(
        default=None,
        description="auth.refresh: the new token's expiry (Unix seconds); null if none.",
    )


class AuthRefreshData(BaseModel):
    """A new token for this connection, sent before the current one expires."""

    token: str = Field(
        min_length=1,
        description="Resolved like the handshake's token; it must name the same user. "
        "Answered by an ack with expires_at; a refused token closes 4401.",
    )


class ResyncData(BaseModel):
    """The server may have dropped messages (a backplane outage): reload state."""

    model_config = ConfigDict(extra="allow")


class RecoveryData(BaseModel):
    """Answer to a ``subscribe`` on a topic that keeps history, after the replayed
    messages; also sent alone (``recovered: false``) when live messages were lost."""

    topic: str = Field(description="The topic.")
    recovered: bool = Field(
        description="True: every message after the client's position was replayed. False: "
        "reload the topic's state from the source of truth, then continue from offset/epoch."
    )
    replayed: int = Field(description="How many stamped messages preceded this envelope.")
    offset: int = Field(description="Offset of the position to continue from.")
    epoch: str = Field(
        description="Epoch of that position (empty when the server knew no position)."
    )


class MemberEvent(BaseModel):
    """A user joined or left a topic (the first tab in, the last tab out, on any node)."""

    topic: str = Field(description="The topic.")
    user_id: str = Field(description="The user.")


class TypingEvent(MemberEvent):
    """A member of the topic is typing (or stopped); never sent to the typist's tabs."""

    typing: bool = Field(description="Whether the user is typing now.")


class ReceiptEvent(MemberEvent):
    """A member reports a message's status (read, delivered...); the sending tab is
    skipped, the user's other tabs get it."""

    message_id: MessageId = Field(description="The message the receipt is about.")
    status: str = Field(description="The status, as the client sent it.")


class ProtocolMessage(NamedTuple):
    """One message of the router's protocol, in one direction."""

    message_type: str
    model: type[BaseModel]
    action: Action
    summary: str


_HEARTBEAT = "Heartbeat. The server pings; a client may ping too."
_CORE: Final[tuple[ProtocolMessage, ...]] = (
    ProtocolMessage(HELLO, HelloData, "send", "First frame of every connection."),
    ProtocolMessage(PING, HeartbeatData, "receive", _HEARTBEAT),
    ProtocolMessage(PING, HeartbeatData, "send", _HEARTBEAT),
    ProtocolMessage(PONG, HeartbeatData, "receive", "Answer to a ping, echoing its request_id."),
    ProtocolMessage(PONG, HeartbeatData, "send", "Answer to a ping, echoing its request_id."),
    ProtocolMessage(ERROR, ErrorData, "send", "An inbound frame or operation was rejected."),
    ProtocolMessage(ACK, AckData, "send", "A request succeeded (its request_id kept)."),
    ProtocolMessage(AUTH_REFRESH, AuthRefreshData, "receive", "Replace the connection's token."),
    ProtocolMessage(RESYNC, ResyncData, "send", "Messages may have been lost; reload state."),
    ProtocolMessage(RECOVERY, RecoveryData, "send", "End of a history replay, or a gap."),
)
_BUILTINS: Final[dict[str, tuple[ProtocolMessage, ...]]] = {
    SUBSCRIBE: (
        ProtocolMessage(
            SUBSCRIBE, SubscribeData, "receive", "Join a topic; resume its history from a position."
        ),
    ),
    UNSUBSCRIBE: (ProtocolMessage(UNSUBSCRIBE, TopicData, "receive", "Leave a topic."),),
    PRESENCE_GET: (ProtocolMessage(PRESENCE_GET, TopicData, "receive", "Ask who is in a topic."),),
    TYPING: (
        ProtocolMessage(TYPING, TypingData, "receive", "Tell a topic's members you type."),
        ProtocolMessage(TYPING, TypingEvent, "send", "A topic member is typing."),
    ),
    RECEIPT: (
        ProtocolMessage(RECEIPT, ReceiptData, "receive", "Report a message's status."),
        ProtocolMessage(RECEIPT, ReceiptEvent, "send", "A topic member reports a status."),
    ),
}
_PRESENCE: Final[tuple[ProtocolMessage, ...]] = (
    ProtocolMessage(PRESENCE_JOIN, MemberEvent, "send", "A user joined the topic."),
    ProtocolMessage(PRESENCE_LEAVE, MemberEvent, "send", "A user left the topic."),
)


def protocol_messages(builtins: Iterable[str], *, presence: bool) -> list[ProtocolMessage]:
    """The router's messages: the core ones, the enabled built-in operations (in a fixed
    order; unknown names are ignored), and the presence events when ``presence``."""
    chosen = frozenset(builtins)
    out = list(_CORE)
    for name, messages in _BUILTINS.items():
        if name in chosen:
            out.extend(messages)
    if presence:
        out.extend(_PRESENCE)
    return out
