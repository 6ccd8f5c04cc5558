"""Security events, and the observers that count them (and a few traffic events).

Every security event goes to the ``tempest_ws.security`` logger (a child of
``tempest_ws``) as ``security <event> connection=<id> reason=<reason>`` followed by
``key=value`` details, and carries the same fields as record attributes (``event``,
``connection_id``, ``reason``) for structured log handlers. Callers pass only
identifiers, sizes, counts, addresses and fixed reasons: never a token, a subprotocol
header or a message body.

Observers (`add_event_observer()`) are called synchronously with ``(event, fields)``
for every security event, whatever the log level, and for the traffic events the
connection path reports through `frame_in()`, `frame_out()` and
`traffic_event()` (``connection_opened``, ``connection_closed`` with ``code``,
``backplane_published``, ``backplane_reconnected``). This is how
[`tempest_ws.metrics`][tempest_ws.observe.metrics] counts without parsing logs. With no observer
registered,
reporting an event costs one truth test. An observer that raises is logged and the
others still run: metrics never break a connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

__all__ = [
    "EventObserver",
    "add_event_observer",
    "frame_in",
    "frame_out",
    "frames_out",
    "remove_event_observer",
    "security_event",
    "traffic_event",
]

logger = logging.getLogger("tempest_ws.security")

EventObserver = Callable[[str, Mapping[str, object]], None]
"""``observer(event, fields)``: ``fields`` holds ``connection_id``, ``reason`` and the
details of a security event, or the fields of a traffic event."""

# A tuple, replaced (never mutated) on change: notifying iterates a stable snapshot, and
# "no observer" is a single truth test on the hot path.
_observers: tuple[EventObserver, ...] = ()


def add_event_observer(observer: EventObserver) -> Callable[[], None]:
    """Call ``observer(event, fields)`` for every event from now on (process-wide).

    Adding the same observer twice registers it once. Returns a function that removes
    it (the same as `remove_event_observer()`).
    """
    global _observers
    if observer not in _observers:
        _observers = (*_observers, observer)
    return lambda: remove_event_observer(observer)


def remove_event_observer(observer: EventObserver) -> None:
    """Stop calling ``observer``. Removing one that is not registered does nothing."""
    global _observers
    _observers = tuple(o for o in _observers if o != observer)


def _notify(event: str, fields: Mapping[str, object]) -> None:
    for observer in _observers:
        try:
            observer(event, fields)
        except Exception:  # an observer is a boundary: it must not break the caller
            logging.getLogger("tempest_ws").exception("event observer %r failed", observer)


def traffic_event(event: str, **fields: int | str) -> None:
    """Report one traffic event to the observers (not logged). Free without observers."""
    if _observers:
        _notify(event, fields)


def frame_in(message: Mapping[str, object]) -> None:
    """Report one inbound ASGI ``websocket.receive`` message (``frame_in``, with its
    size in bytes). Free without observers."""
    if _observers:
        text = message.get("text")
        data = text.encode() if isinstance(text, str) else message.get("bytes")
        _notify("frame_in", {"bytes": len(data) if isinstance(data, bytes) else 0})


def frame_out(frame: str) -> None:
    """Report one outbound text frame accepted for sending (``frame_out``, with its
    UTF-8 size in bytes). Free without observers."""
    if _observers:
        size = len(frame) if frame.isascii() else len(frame.encode())
        _notify("frame_out", {"bytes": size})


def frames_out(frame: str, count: int) -> None:
    """`frame_out()` for ``count`` copies of one frame (a fan-out reports once). Free
    without observers."""
    if _observers:
        for _ in range(count):
            frame_out(frame)


def security_event(
    event: str,
    connection_id: str,
    reason: str,
    *,
    level: int = logging.WARNING,
    **details: str | int | float | None,
) -> None:
    """Log one security event (see the module docstring for what may be passed) and
    report it to the observers."""
    if _observers:
        _notify(event, {"connection_id": connection_id, "reason": reason, **details})
    if not logger.isEnabledFor(level):
        return
    template = "security %s connection=%s reason=%s" + "".join(f" {k}=%r" for k in details)
    logger.log(
        level,
        template,
        event,
        connection_id,
        reason,
        *details.values(),
        extra={"event": event, "connection_id": connection_id, "reason": reason},
    )
