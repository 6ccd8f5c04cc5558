"""Event handlers as declared: what each ``@router.on`` function asks for and returns.

A handler is read once, when it is registered. Each parameter is one of:

- a pydantic model: the envelope's ``data``, validated (at most one such parameter);
- `WebSocketConnection`, `WebSocketHub`, Starlette's ``WebSocket`` or `WSEnvelope`,
  injected by type;
- a FastAPI dependency (``= Depends(f)`` or ``Annotated[T, Depends(f)]``), solved per
  message by FastAPI's own ``solve_dependencies``.

The return annotation is the reply's schema: a pydantic model, ``None`` (no reply),
`WSEnvelope` (the handler builds its answer), or anything else JSON can encode.
Anything else in the signature is refused with a
[`ConfigurationError`][tempest_ws.exceptions.ConfigurationError] naming the parameter,
at registration, never at the first message.
"""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final, get_args, get_origin

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from pydantic import BaseModel
from starlette.websockets import WebSocket

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.router.events._solve import Solver
from tempest_ws.wire.envelope import MAX_TYPE_LENGTH, RESERVED_TYPES, WSEnvelope

__all__ = ["REPLY_SUFFIX", "EventHandler", "EventRegistry", "Injected", "reply_type"]

REPLY_SUFFIX: Final = ".reply"
"""A handler's reply has the request's type with this suffix: ``chat.send.reply``."""

EventCall = Callable[..., Awaitable[Any]]


def reply_type(message_type: str) -> str:
    """The ``type`` of the reply to a ``message_type`` request."""
    return message_type + REPLY_SUFFIX


class Injected(enum.Enum):
    """What a handler parameter receives."""

    MESSAGE = "message"
    CONNECTION = "connection"
    HUB = "hub"
    WEBSOCKET = "websocket"
    ENVELOPE = "envelope"


@dataclass(frozen=True, slots=True)
class EventHandler:
    """One registered handler, as read from its signature.

    Attributes:
        message_type: the envelope ``type`` it answers.
        reply: the ``type`` of its reply, ``<message_type>.reply``.
        call: the ``async def`` itself.
        model: the model ``data`` is validated into, or ``None`` (``data`` is not read).
        injected: ``(parameter, what)`` for every parameter that is not a dependency.
        dependant: FastAPI's view of the dependency parameters, ``None`` without any.
        solver: what solves ``dependant`` per message, ``None`` without dependencies.
        reply_model: the return annotation when it is a model, else ``None``.
        replies: ``False`` when the return annotation is ``None``.
        own_reply: the return annotation is `WSEnvelope`: the handler builds its answer.
        concurrent: run beside the connection's other messages instead of in order.
        errors: error codes the handler documents (``WebSocketError`` codes it raises).
        summary: the first line of the handler's docstring.
    """

    message_type: str
    reply: str
    call: EventCall
    model: type[BaseModel] | None
    injected: tuple[tuple[str, Injected], ...]
    dependant: Dependant | None
    solver: Solver | None
    reply_model: type[BaseModel] | None
    replies: bool
    own_reply: bool
    concurrent: bool
    errors: tuple[str, ...]
    summary: str | None


_BY_TYPE: Final[tuple[tuple[type, Injected], ...]] = (
    (WebSocketConnection, Injected.CONNECTION),
    (WebSocketHub, Injected.HUB),
    (WebSocket, Injected.WEBSOCKET),
    (WSEnvelope, Injected.ENVELOPE),
)


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _depends_in(parameter: inspect.Parameter, annotation: object) -> bool:
    if isinstance(parameter.default, params.Depends):
        return True
    if get_origin(annotation) is Annotated:
        return any(isinstance(extra, params.Depends) for extra in get_args(annotation)[1:])
    return False


def _injected_by_type(annotation: object) -> Injected | None:
    if not isinstance(annotation, type):
        return None
    for cls, what in _BY_TYPE:
        if issubclass(annotation, cls):
            return what
    return None


def _dependant_of(name: str, dependencies: list[inspect.Parameter]) -> Dependant | None:
    """FastAPI's ``Dependant`` for the dependency parameters alone."""
    if not dependencies:
        return None

    def solved(**values: Any) -> None:  # pragma: no cover - never called, only read
        """Stands for the handler in FastAPI's eyes: its dependency parameters only."""

    solved.__signature__ = inspect.Signature(dependencies)  # type: ignore[attr-defined]
    solved.__qualname__ = name
    return get_dependant(path="", call=solved)


def read_handler(
    message_type: str,
    call: EventCall,
    *,
    concurrent: bool = False,
    errors: Iterable[str] = (),
) -> EventHandler:
    """Read ``call``'s signature into an `EventHandler`.

    Raises:
        ConfigurationError: ``call`` is not an ``async def``, has two model parameters,
            or a parameter that is neither a model, an injected type nor a dependency.
    """
    if not inspect.iscoroutinefunction(call):
        raise ConfigurationError(f"the handler of {message_type!r} must be an async def")
    name = getattr(call, "__qualname__", repr(call))
    try:
        hints = typing.get_type_hints(call, include_extras=True)
    except NameError as exc:
        raise ConfigurationError(f"{name}: an annotation cannot be resolved: {exc}") from None
    model: type[BaseModel] | None = None
    injected: list[tuple[str, Injected]] = []
    dependencies: list[inspect.Parameter] = []
    for parameter in inspect.signature(call).parameters.values():
        annotation = hints.get(parameter.name, parameter.annotation)
        if _depends_in(parameter, annotation):
            dependencies.append(parameter.replace(annotation=annotation))
            continue
        what = _injected_by_type(annotation)
        if what is not None:
            injected.append((parameter.name, what))
        elif _is_model(annotation):
            if model is not None:
                raise ConfigurationError(f"{name}: only one parameter may be the message model")
            model = annotation
            injected.append((parameter.name, Injected.MESSAGE))
        else:
            raise ConfigurationError(
                f"{name}: parameter {parameter.name!r} is not a pydantic model, "
                "WebSocketConnection, WebSocketHub, WebSocket, WSEnvelope or a Depends()"
            )
    returned = hints.get("return", inspect.Signature.empty)
    own_reply = isinstance(returned, type) and issubclass(returned, WSEnvelope)
    doc = inspect.getdoc(call)
    dependant = _dependant_of(name, dependencies)
    return EventHandler(
        message_type=message_type,
        reply=reply_type(message_type),
        call=call,
        model=model,
        injected=tuple(injected),
        dependant=dependant,
        solver=None if dependant is None else Solver(dependant),
        reply_model=returned if _is_model(returned) and not own_reply else None,
        replies=returned is not None and returned is not type(None),
        own_reply=own_reply,
        concurrent=concurrent,
        errors=tuple(errors),
        summary=doc.splitlines()[0] if doc else None,
    )


class EventRegistry:
    """The event handlers of one router, by envelope ``type``.

    Args:
        taken: whether a type is answered elsewhere (a built-in operation of the router,
            an inbound type of its ``messages`` registry); registering one is refused.
    """

    def __init__(self, taken: Callable[[str], bool] = lambda _type: False) -> None:
        self._handlers: dict[str, EventHandler] = {}
        self._taken = taken

    def __len__(self) -> int:
        return len(self._handlers)

    def __iter__(self) -> Iterator[EventHandler]:
        return iter(self._handlers.values())

    def get(self, message_type: str) -> EventHandler | None:
        """The handler of ``message_type``, or ``None``."""
        return self._handlers.get(message_type)

    def add(self, handler: EventHandler) -> None:
        """Register ``handler``.

        Raises:
            ConfigurationError: the type is empty or too long, is one of the router's own
                (``hello``, ``ping``, ``error``, ``ack``, ...), a built-in operation, an
                inbound type of the ``messages`` registry, a reply type, or already has
                a handler.
        """
        message_type = handler.message_type
        if not message_type or len(message_type) > MAX_TYPE_LENGTH:
            raise ConfigurationError(f"event type must be 1 to {MAX_TYPE_LENGTH} characters")
        if message_type in RESERVED_TYPES or message_type.endswith(REPLY_SUFFIX):
            raise ConfigurationError(f"{message_type!r} is reserved by the router")
        if self._taken(message_type):
            raise ConfigurationError(
                f"{message_type!r} is already answered by a built-in or the messages registry"
            )
        if message_type in self._handlers:
            raise ConfigurationError(f"{message_type!r} already has a handler")
        self._handlers[message_type] = handler
