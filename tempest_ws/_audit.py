"""Security events: one record per refused handshake, limit hit or forced close.

Every event goes to the ``tempest_ws.security`` logger (a child of ``tempest_ws``) as
``security <event> connection=<id> reason=<reason>`` followed by ``key=value`` details,
and carries the same fields as record attributes (``event``, ``connection_id``,
``reason``) for structured log handlers. Callers pass only identifiers, sizes, counts,
addresses and fixed reasons: never a token, a subprotocol header or a message body.
"""

from __future__ import annotations

import logging

__all__ = ["security_event"]

logger = logging.getLogger("tempest_ws.security")


def security_event(
    event: str,
    connection_id: str,
    reason: str,
    *,
    level: int = logging.WARNING,
    **details: str | int | float | None,
) -> None:
    """Log one security event (see the module docstring for what may be passed)."""
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
