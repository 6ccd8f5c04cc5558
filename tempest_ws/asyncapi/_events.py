"""The event handlers of a router (``@router.on``), as the AsyncAPI document lists them.

Each handler is a message the server receives (``data``: its model, or any JSON value
when it takes none) whose ``receive`` operation has a ``reply``: the ``<type>.reply``
message with the return annotation's schema (``ack`` when it returns ``None``; nothing
more when it returns a `WSEnvelope` of its own making), and the ``error`` message. The
error codes it may answer are listed in the operation's description and in its
``x-tempest-ws-errors`` extension: ``invalid_data`` when it validates a model,
``internal_error`` always, then the codes given to ``@router.on(errors=...)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from tempest_ws.asyncapi._protocol import ProtocolMessage
from tempest_ws.router.events._handlers import EventHandler, reply_type
from tempest_ws.router.events._reply import INTERNAL_ERROR
from tempest_ws.wire.envelope import ACK, ERROR
from tempest_ws.wire.messages import INVALID_DATA

__all__ = ["ERRORS_EXTENSION", "add_replies", "event_messages"]

ERRORS_EXTENSION: Final = "x-tempest-ws-errors"
"""The operation extension listing the error codes an event handler may answer."""

Key = tuple[str, str]
"""``(message type, action)``."""


class AnyData(BaseModel):
    """Any JSON value: the handler does not validate ``data``."""

    model_config = ConfigDict(extra="allow")


class AnyReply(BaseModel):
    """The handler's return value, as JSON."""

    model_config = ConfigDict(extra="allow")


def event_messages(handlers: Iterable[EventHandler]) -> list[ProtocolMessage]:
    """The request and reply message of every handler."""
    out: list[ProtocolMessage] = []
    for handler in handlers:
        summary = handler.summary or f"Handled by {handler.call.__name__}."
        out.append(
            ProtocolMessage(handler.message_type, handler.model or AnyData, "receive", summary)
        )
        if handler.replies and not handler.own_reply:
            reply = reply_type(handler.message_type)
            returned = handler.reply_model or AnyReply
            out.append(
                ProtocolMessage(reply, returned, "send", f"Reply to {handler.message_type}.")
            )
    return out


def error_codes(handler: EventHandler) -> list[str]:
    """The error codes ``handler``'s caller may receive."""
    codes = [INVALID_DATA] if handler.model is not None else []
    codes.append(INTERNAL_ERROR)
    codes.extend(code for code in handler.errors if code not in codes)
    return codes


def add_replies(
    handlers: Iterable[EventHandler],
    operations: dict[str, Any],
    operation_of: dict[Key, str],
    message_of: dict[Key, str],
    channel_ref: str,
) -> None:
    """Give each handler's ``receive`` operation its ``reply`` and error codes."""
    for handler in handlers:
        operation = operations[operation_of[(handler.message_type, "receive")]]
        keys = [message_of[(ERROR, "send")]]
        if handler.replies and not handler.own_reply:
            keys.insert(0, message_of[(reply_type(handler.message_type), "send")])
        elif not handler.replies:
            keys.insert(0, message_of[(ACK, "send")])
        operation["reply"] = {
            "channel": {"$ref": channel_ref},
            "messages": [{"$ref": f"{channel_ref}/messages/{key}"} for key in keys],
        }
        codes = error_codes(handler)
        operation["description"] = "Errors: " + ", ".join(f"`{code}`" for code in codes) + "."
        operation[ERRORS_EXTENSION] = codes
