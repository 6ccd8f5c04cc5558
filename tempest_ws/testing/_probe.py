"""``HubProbe``: record what a hub delivered and to whom, for users' own tests.

Re-exported by [`tempest_ws.testing`][tempest_ws.testing]; see its docstring for the other
helpers.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from tempest_ws._types import UserId
from tempest_ws.exceptions import EnvelopeError
from tempest_ws.wire.envelope import HELLO, PING, WSEnvelope, decode_envelope, encode_envelope

if TYPE_CHECKING:
    from tempest_ws.hub._connection import WebSocketConnection
    from tempest_ws.hub._hub import WebSocketHub

__all__ = ["HubProbe", "ProbedDelivery", "ProbedFrame"]

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds any testing helper waits before failing; only reached when something is broken."""

# -- what the hub delivered -------------------------------------------------------------

_DELIVERY_METHODS: Final = ("broadcast", "send_to", "send_to_connection")


@dataclass(frozen=True, slots=True)
class ProbedFrame:
    """One frame offered to one connection's send queue.

    Attributes:
        connection_id: the connection.
        user_id: its user, as ``str``.
        envelope: the frame, decoded.
        queued: ``False`` when the queue refused it (closing, or full: a slow consumer).
        via: the hub method that sent it, or ``None`` (the router's ``hello`` and pings,
            ``connection.send``, deliveries arriving from other processes).
    """

    connection_id: str
    user_id: str
    envelope: WSEnvelope
    queued: bool
    via: str | None


@dataclass(slots=True)
class ProbedDelivery:
    """One call of a hub delivery method and the frames it queued in this process.

    Attributes:
        method: ``broadcast``, ``send_to`` or ``send_to_connection``.
        envelope: what was sent.
        arguments: the call's other arguments by name (``topic``, ``user_id``, ...).
        frames: the frames it offered to local connections, in order.
        result: what the call returned (``None`` while running or if it raised).
        error: the exception it raised, if any.
    """

    method: str
    envelope: WSEnvelope
    arguments: dict[str, Any]
    frames: list[ProbedFrame] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None

    @property
    def users(self) -> set[str]:
        """Users this delivery was queued for in this process."""
        return {f.user_id for f in self.frames if f.queued}

    @property
    def connections(self) -> set[str]:
        """Connections this delivery was queued for in this process."""
        return {f.connection_id for f in self.frames if f.queued}


def _decoded(frame: str) -> WSEnvelope:
    try:
        return decode_envelope(frame)
    except EnvelopeError:  # valid JSON the hub accepts but WSEnvelope would not (a long type)
        body = json.loads(frame)
        return WSEnvelope.model_construct(
            type=str(body["type"]), data=body.get("data"), request_id=body.get("request_id")
        )


class HubProbe:
    """Records what a hub delivers and to whom, without changing what it does.

    ``with HubProbe(hub) as probe:`` wraps the hub's ``broadcast``, ``send_to`` and
    ``send_to_connection`` and the send queue of every connection the hub creates or
    registers from then on; leaving the block restores them. Install it before clients
    connect (connections opened earlier are seen only through the delivery calls).

    ``probe.deliveries`` lists the calls, ``probe.frames`` every frame offered to a
    queue (the router's ``hello`` and pings included), `received()` what one user or
    connection was sent, and `wait_for()` waits for a delivery the server makes in
    reaction to a client frame.
    """

    def __init__(self, hub: WebSocketHub) -> None:
        self.hub = hub
        self.deliveries: list[ProbedDelivery] = []
        self.frames: list[ProbedFrame] = []
        self._current: contextvars.ContextVar[ProbedDelivery | None] = contextvars.ContextVar(
            "tempest_ws_probe", default=None
        )
        self._wrapped: dict[str, WebSocketConnection] = {}
        self._changed = asyncio.Event()
        self._installed = False

    def __enter__(self) -> HubProbe:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    def install(self) -> None:
        """Start recording. Idempotent.

        Raises:
            RuntimeError: another probe (or a patch) already replaced the hub's methods;
                one probe per hub at a time.
        """
        if self._installed:
            return
        hub = self.hub
        patched = [
            n for n in (*_DELIVERY_METHODS, "create_connection", "register") if n in vars(hub)
        ]
        if patched:
            raise RuntimeError(f"hub methods already replaced: {patched}")
        for name in _DELIVERY_METHODS:
            setattr(hub, name, self._delivery_wrapper(name, getattr(hub, name)))
        create, register = hub.create_connection, hub.register

        def create_connection(*args: Any, **kwargs: Any) -> WebSocketConnection:
            return self._watch(create(*args, **kwargs))

        async def register_connection(connection: WebSocketConnection) -> None:
            await register(self._watch(connection))

        hub.create_connection = create_connection  # type: ignore[method-assign]
        hub.register = register_connection  # type: ignore[method-assign]
        self._installed = True

    def uninstall(self) -> None:
        """Stop recording and restore the hub and the connections. Idempotent."""
        if not self._installed:
            return
        for name in (*_DELIVERY_METHODS, "create_connection", "register"):
            vars(self.hub).pop(name, None)
        for connection in self._wrapped.values():
            vars(connection).pop("enqueue", None)
        self._wrapped.clear()
        self._installed = False

    def _delivery_wrapper(
        self, method: str, original: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        signature = inspect.signature(original)

        async def deliver(*args: Any, **kwargs: Any) -> Any:
            try:
                arguments = dict(signature.bind(*args, **kwargs).arguments)
                frame = encode_envelope(arguments.pop("envelope"))
            except (TypeError, EnvelopeError):
                return await original(*args, **kwargs)  # let the hub raise its own error
            record = ProbedDelivery(method, _decoded(frame), arguments)
            self.deliveries.append(record)
            token = self._current.set(record)
            try:
                record.result = await original(*args, **kwargs)
            except BaseException as exc:
                record.error = exc
                raise
            finally:
                self._current.reset(token)
                self._changed.set()
            return record.result

        return deliver

    def _watch(self, connection: WebSocketConnection) -> WebSocketConnection:
        if connection.connection_id in self._wrapped:
            return connection
        enqueue = connection.enqueue

        def recording_enqueue(frame: str, size: int = -1) -> bool:
            queued = enqueue(frame, size)
            delivery = self._current.get()
            record = ProbedFrame(
                connection.connection_id,
                connection.user_key,
                _decoded(frame),
                queued,
                delivery.method if delivery is not None else None,
            )
            self.frames.append(record)
            if delivery is not None:
                delivery.frames.append(record)
            self._changed.set()
            return queued

        connection.enqueue = recording_enqueue  # type: ignore[method-assign]
        self._wrapped[connection.connection_id] = connection
        return connection

    def received(
        self,
        *,
        user_id: UserId | None = None,
        connection_id: str | None = None,
        message_type: str | None = None,
    ) -> list[WSEnvelope]:
        """Envelopes queued for a user and/or connection, oldest first.

        The router's ``hello`` and ``ping`` frames are left out unless ``message_type``
        asks for them. Refused frames (a closing or full queue) are not counted.
        """
        wanted_user = None if user_id is None else str(user_id)
        return [
            f.envelope
            for f in self.frames
            if f.queued
            and (wanted_user is None or f.user_id == wanted_user)
            and (connection_id is None or f.connection_id == connection_id)
            and (
                f.envelope.type == message_type
                if message_type is not None
                else f.envelope.type not in (HELLO, PING)
            )
        ]

    def recipients(self, message_type: str) -> set[str]:
        """Users that were queued at least one ``message_type`` envelope."""
        return {f.user_id for f in self.frames if f.queued and f.envelope.type == message_type}

    async def wait_for(
        self,
        message_type: str,
        *,
        count: int = 1,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> list[ProbedDelivery]:
        """Wait until ``count`` finished deliveries of ``message_type`` were made.

        Raises:
            AssertionError: fewer than ``count`` within ``timeout`` seconds.
        """

        def done() -> list[ProbedDelivery]:
            return [
                d
                for d in self.deliveries
                if d.envelope.type == message_type and (d.result is not None or d.error)
            ]

        try:
            async with asyncio.timeout(timeout):
                while len(done()) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{len(done())} of {count} {message_type!r} deliveries within {timeout} s"
            ) from None
        return done()[:count]
