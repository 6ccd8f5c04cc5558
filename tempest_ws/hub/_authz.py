"""Topic authorization: the application's ``topic_authorizer``, called fail-closed.

The hub asks the authorizer before every new subscription (built-in ``subscribe``,
``?topics=`` at connect time, and ``hub.subscribe`` from handlers alike). Only a verdict
of exactly ``True`` subscribes. ``False``, any other value, an exception or no answer
within the timeout is a denial; each denial is a ``topic_denied`` security event
(``tempest_ws.security``) with the connection id and the topic.

Topics are closed by default: a router whose built-ins can subscribe and a hub that
keeps presence or history refuse to start without an authorizer
(`require_authorizer()`). Opening every topic to every authenticated user is the
explicit choice `allow_any_topic()`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias, cast

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.observe._audit import security_event

if TYPE_CHECKING:
    from tempest_ws.hub._connection import WebSocketConnection

__all__ = ["TopicAuthorizer", "TopicGate", "allow_any_topic", "authorize", "require_authorizer"]

logger = logging.getLogger("tempest_ws.hub")

TopicAuthorizer: TypeAlias = Callable[["WebSocketConnection", str], bool | Awaitable[bool]]
"""``(connection, topic) -> bool`` (sync or async): whether the connection may subscribe."""


def allow_any_topic(connection: WebSocketConnection, topic: str) -> bool:
    """A ``topic_authorizer`` that admits every authenticated connection to every topic.

    For trusted or development use only: with it, any signed-in user may subscribe to
    any topic (another user's inbox included), read its history and its presence. Pass
    it explicitly (``topic_authorizer=allow_any_topic``) so the choice can be found with
    ``grep``; production apps pass a function that checks the user's rooms.
    """
    return True


def require_authorizer(authorizer: TopicAuthorizer | None, *, because: str) -> None:
    """Refuse a configuration that lets clients into topics without an authorizer.

    Raises:
        ConfigurationError: ``authorizer`` is ``None``; the message names the fix.
    """
    if authorizer is None:
        raise ConfigurationError(
            f"{because}, so topics need a topic_authorizer: pass "
            "topic_authorizer=<a function (connection, topic) -> bool> to the hub or the "
            "router, or topic_authorizer=tempest_ws.allow_any_topic to admit every "
            "authenticated user to every topic (trusted or development use only)"
        )


async def authorize(
    authorizer: TopicAuthorizer,
    connection: WebSocketConnection,
    topic: str,
    *,
    timeout: float,  # noqa: ASYNC109
) -> bool:
    """Ask ``authorizer``; ``True`` only for a verdict of exactly ``True`` in time."""
    cid = connection.connection_id
    try:
        async with asyncio.timeout(timeout):
            # An object, not a bool: the application's callable may return anything.
            verdict = cast(object, authorizer(connection, topic))
            if inspect.isawaitable(verdict):
                verdict = await verdict
    except TimeoutError:
        logger.warning("topic authorizer gave no answer within %.1fs (%s)", timeout, cid)
        verdict = False
    except Exception:
        logger.exception("topic authorizer raised; subscription denied (%s)", cid)
        verdict = False
    if verdict is not True and verdict is not False:
        logger.error("topic authorizer returned %s, not a bool; denied (%s)", type(verdict), cid)
    if verdict is True:
        return True
    security_event("topic_denied", cid, "topic authorizer refused", topic=topic)
    return False


class TopicGate:
    """A hub's ``topic_authorizer`` and its timeout: whether a connection may join a topic.

    Args:
        authorizer: the application's ``(connection, topic) -> bool``, or ``None``:
            every topic is open (a hub with neither presence nor history, fed by
            server code). The hub's ``topic_authorizer`` reads and sets it.
        timeout: seconds the authorizer may take before it counts as a denial.
    """

    def __init__(self, authorizer: TopicAuthorizer | None, timeout: float) -> None:
        self.authorizer = authorizer
        self.timeout = timeout

    async def admits(self, connection: WebSocketConnection, topic: str) -> bool:
        """Whether the authorizer admits ``connection`` to ``topic`` (`authorize()`);
        ``True`` without one."""
        if self.authorizer is None:
            return True
        return await authorize(self.authorizer, connection, topic, timeout=self.timeout)
