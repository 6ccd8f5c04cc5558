"""OpenTelemetry spans per inbound message, and trace context across the backplane.

Off by default. Build one `Tracing` and give it to the hub; the router uses the
hub's unless it is given its own::

    hub = WebSocketHub(tracing=Tracing())          # the global tracer provider
    router = make_websocket_router(handler, hub=hub, bearer_resolver=..., settings=...)

Then:

- every inbound envelope but heartbeats gets a ``CONSUMER`` span,
  ``tempest_ws.receive <type>`` (the type only when it is known to be valid: a built-in
  operation, ``auth.refresh`` or a type of the router's message registry; else
  ``tempest_ws.receive``). It starts when the frame is read, so it covers decoding and
  validation, and ends when the frame is handled: after the router answered it, or, for a
  frame delivered to the handler, when the handler asks for its next frame (or ends).
  While the handler works on the frame the span is the current span of the handler's
  task, so whatever it does (a ``hub.broadcast``, a database call) is its child. A span is
  a new trace, linked to the span current when the connection opened (FastAPI's connection
  span, when there is one): a connection that lives for hours does not grow one trace.
  Invalid frames and handler exceptions set the span's status to error;
- a delivery made in a span (``broadcast``, ``send_to``, ``send_to_connection``) carries
  the W3C ``traceparent``/``tracestate`` of that span in the packet header (key ``tp``),
  and every node that runs it locally opens a ``CONSUMER`` span
  ``tempest_ws.fan_out <op>``, a child of the publisher's span, around its fan-out.

Attributes name the message system, the envelope type, the request id, sizes, the
connection id and node ids; never a token, a user id, a topic or a message body (nor an
exception's message, which may quote one). See ``docs/tracing.md``.

With tracing off the hot paths pay one ``None`` test each. Importing this module does not
import ``opentelemetry``; building `Tracing` without ``opentelemetry-api`` raises
[`MissingDependencyError`][tempest_ws.exceptions.MissingDependencyError] naming the ``otel`` extra.
"""

from __future__ import annotations

import contextvars
import time
from collections import deque
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from tempest_ws._version import __version__
from tempest_ws.exceptions import MissingDependencyError
from tempest_ws.router.realtime import ENVELOPE_KEY, MODEL_KEY
from tempest_ws.wire.messages import INVALID_DATA

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from tempest_ws.backplane.packet import Packet
    from tempest_ws.wire.envelope import WSEnvelope

__all__ = ["MESSAGING_SYSTEM", "PACKET_KEY", "Tracing"]

MESSAGING_SYSTEM: Final = "tempest_ws"
"""The ``messaging.system`` attribute of every span tempest_ws starts."""

PACKET_KEY: Final = "tp"
"""The packet header key carrying the W3C trace context (``traceparent``, ``tracestate``)."""

_SPAN_KEY: Final = "tempest_ws.span"
# The key the session adds to the ASGI message of a delivered frame: its open span.

_ROUTER_VERDICTS: Final = frozenset({"builtin", "refresh", "invalid"})
_NAMED_VERDICTS: Final = frozenset({"builtin", "refresh", "event"})
# Frames whose type is known to be valid: their span is named after it.

_session: contextvars.ContextVar[SessionTracer | None] = contextvars.ContextVar(
    "tempest_ws_trace_session", default=None
)
# The tracer of the connection whose read loop (or handler) runs in this task, so that
# the rare paths (a rejected frame, a failed handler) report without a reference to it.


def _handled_by(verdict: str) -> str:
    if verdict == "event":
        return "event"
    return "router" if verdict in _ROUTER_VERDICTS else "handler"


def _opentelemetry() -> Any:
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise MissingDependencyError("opentelemetry-api", "otel") from None
    return context, trace, TraceContextTextMapPropagator()


class Tracing:
    """OpenTelemetry tracing for a hub and its router (see the module docstring).

    Args:
        tracer_provider: where spans go; the global provider by default (looked up when
            each span starts, so an SDK configured after this object is built is used).

    Raises:
        MissingDependencyError: opentelemetry-api is not installed (the ``otel`` extra).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        context, trace, propagator = _opentelemetry()
        self.tracer = trace.get_tracer("tempest_ws", __version__, tracer_provider=tracer_provider)
        """The OpenTelemetry ``Tracer`` tempest_ws starts its spans with."""
        self._context = context
        self._trace = trace
        self._propagator = propagator
        self._root = context.Context()  # an empty context: a span started in it is a root

    # -- the backplane ---------------------------------------------------------------------

    def inject(self) -> dict[str, str] | None:
        """The W3C trace context of the current span, for a packet header; ``None``
        outside a (valid) span. Called by the hub for every delivery it publishes."""
        if not self._trace.get_current_span().get_span_context().is_valid:
            return None
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier or None

    def fan_out(self, packet: Packet, node_id: str) -> RemoteSpan | None:
        """Open the span around this node's fan-out of another node's delivery, a child
        of the publisher's span; ``None`` for a packet that carries no trace context
        (remote spans continue traces, they never start one)."""
        if packet.trace is None:
            return None
        parent = self._propagator.extract(packet.trace, context=self._root)
        if not self._trace.get_current_span(parent).get_span_context().is_valid:
            return None
        span = self.tracer.start_span(
            f"tempest_ws.fan_out {packet.op}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "fan_out",
                "tempest_ws.node.id": node_id,
                "tempest_ws.packet.node": packet.node,
                "tempest_ws.packet.op": packet.op,
            },
        )
        return RemoteSpan(span)

    # -- the connection path ---------------------------------------------------------------

    def session(self, connection_id: str) -> SessionTracer:
        """The tracer of one connection's frames. Called by the router's endpoint in the
        connection's task, before its handler task starts."""
        current = self._trace.get_current_span().get_span_context()
        links = (self._trace.Link(current),) if current.is_valid else ()
        tracer = SessionTracer(self, connection_id, links)
        _session.set(tracer)
        return tracer


class RemoteSpan:
    """The open span of one remote fan-out (see `Tracing.fan_out()`)."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def end(self, delivered: int) -> None:
        """Record how many local connections the frame was queued for; end the span."""
        self._span.set_attribute("tempest_ws.recipients", delivered)
        self._span.end()


class SessionTracer:
    """The spans of one connection's inbound frames, driven by the session's hooks.

    The read loop calls `arrived()` for each frame, `inspected()` once it knows
    what the frame is, `invalid()` if it counted as invalid and `settle()` before
    reading the next one; the handler's ``receive`` calls `handler_done()` and
    `handler_took()`; the endpoint calls `close()` when the session ends.
    """

    def __init__(self, tracing: Tracing, connection_id: str, links: tuple[Any, ...]) -> None:
        self._tracing = tracing
        self._attach = tracing._context.attach
        self._connection_id = connection_id
        self._links = links
        self._arrived = 0
        self._rejected: str | None = None
        self._rejected_envelope: WSEnvelope | None = None
        self._span: Span | None = None  # a frame the router handles, until settled
        self._span_failed = False
        self._token: object = None
        self._queued: deque[Span] = deque()  # delivered frames the handler has not taken
        self._handled: Span | None = None  # the frame the handler works on
        self._handler_base: object = None

    # -- read loop -------------------------------------------------------------------------

    def arrived(self) -> None:
        """A frame was read: its span starts now (if it gets one)."""
        self._arrived = time.time_ns()

    def rejected(self, code: str, envelope: WSEnvelope | None) -> None:
        """The frame being inspected (``envelope``, if it decoded) was answered with error
        ``code``."""
        self._rejected = code
        self._rejected_envelope = envelope

    def inspected(
        self, message: MutableMapping[str, Any], verdict: str, envelope: WSEnvelope | None
    ) -> None:
        """Start the frame's span, unless it is a heartbeat. ``verdict``: ``deliver``
        (the span goes with the frame to the handler), ``builtin`` / ``refresh`` /
        ``event`` (an event handler's message, queued for it; current until
        `settle()`), ``invalid`` or ``handled`` (a ping or pong: no span)."""
        rejected, self._rejected = self._rejected, None
        if verdict == "handled":
            return
        if envelope is None:
            envelope = message.get(ENVELOPE_KEY, self._rejected_envelope)
        self._rejected_envelope = None
        kind = None if envelope is None else envelope.type
        known = verdict in _NAMED_VERDICTS or message.get(MODEL_KEY) is not None
        name = f"tempest_ws.receive {kind}" if known else "tempest_ws.receive"
        trace = self._tracing._trace
        span = self._tracing.tracer.start_span(
            name,
            context=self._tracing._root,
            kind=trace.SpanKind.CONSUMER,
            attributes=self._attributes(message, verdict, envelope),
            links=self._links,
            start_time=self._arrived or None,
        )
        if verdict == "deliver":
            message[_SPAN_KEY] = span
            self._queued.append(span)
            return
        self._span = span
        self._span_failed = False
        if verdict == "invalid":
            self._fail(span, rejected or "invalid_frame")
        self._token = self._attach(trace.set_span_in_context(span))

    def _attributes(
        self, message: Mapping[str, Any], verdict: str, envelope: WSEnvelope | None
    ) -> dict[str, str | int]:
        text = message.get("text")
        if isinstance(text, str):
            size = len(text) if text.isascii() else len(text.encode())
        else:
            data = message.get("bytes")
            size = len(data) if isinstance(data, bytes) else 0
        attributes: dict[str, str | int] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "receive",
            "messaging.message.body.size": size,
            "tempest_ws.connection.id": self._connection_id,
            "tempest_ws.handled_by": _handled_by(verdict),
        }
        if envelope is not None:
            attributes["tempest_ws.message.type"] = envelope.type
            if envelope.request_id is not None:
                attributes["messaging.message.conversation_id"] = envelope.request_id
        return attributes

    def _fail(self, span: Span, error: str) -> None:
        if span is self._span:
            self._span_failed = True
        span.set_attribute("error.type", error)
        span.set_status(self._tracing._trace.StatusCode.ERROR, error)

    def invalid(self) -> None:
        """The frame counted as invalid: one `inspected()` marked already, or a
        built-in operation whose ``data`` was invalid (the only way built-ins reject)."""
        span = self._span
        if span is not None and not self._span_failed:
            self._fail(span, INVALID_DATA)

    def settle(self) -> None:
        """The router is done with the last frame: end its span."""
        span = self._span
        if span is not None:
            self._span = None
            self._tracing._context.detach(self._token)
            span.end()

    # -- handler ---------------------------------------------------------------------------

    def handler_took(self, message: MutableMapping[str, Any]) -> None:
        """The handler received ``message``: its span is current in the handler's task
        until the handler asks for the next frame."""
        span = message.pop(_SPAN_KEY, None)
        if span is None:
            return
        if self._queued and self._queued[0] is span:
            self._queued.popleft()
        elif span in self._queued:
            self._queued.remove(span)
        context = self._tracing._context
        self._handler_base = context.get_current()
        self._handled = span
        # Set, not attach/detach: the handler may call receive from another task.
        self._attach(self._tracing._trace.set_span_in_context(span, self._handler_base))

    def handler_done(self) -> None:
        """The handler asked for its next frame: the last one is handled."""
        span = self._handled
        if span is not None:
            self._handled = None
            self._attach(self._handler_base)
            span.end()

    def handler_failed(self, exc: BaseException) -> None:
        """The handler raised ``exc`` while working on its current frame."""
        span = self._handled
        if span is not None:
            self._fail(span, type(exc).__qualname__)
            self.handler_done()

    def close(self) -> None:
        """The session ended: end every span still open (frames never handled included)."""
        self.settle()
        if self._handled is not None:  # not handler_done: this is not the handler's task
            self._handled.end()
            self._handled = None
        while self._queued:
            span = self._queued.popleft()
            span.set_attribute("tempest_ws.handler_skipped", True)
            span.end()


def note_rejection(code: str, envelope: WSEnvelope | None) -> None:
    """Hook of the session: the frame it reads (``envelope``, if it decoded) was answered
    with error ``code``. Without tracing: one context variable lookup, on this path only."""
    tracer = _session.get()
    if tracer is not None:
        tracer.rejected(code, envelope)


def note_handler_error(exc: BaseException) -> None:
    """Hook of the endpoint: the handler raised ``exc``. Free without tracing."""
    tracer = _session.get()
    if tracer is not None:
        tracer.handler_failed(exc)
