"""Topic presence on the hub's side: who is in which topic, and the join/leave events.

For every topic it keeps presence for, the hub counts the subscribed connections of each
user in this process (a user's tabs). When a user's count goes from 0 to 1, the node
tells the backplane (``Presence.topic_join``), which answers whether the user was in the
topic on no live node before; if so, this node announces ``presence.join`` to the
topic's members. From 1 to 0: ``topic_leave``, and ``presence.leave`` if the user is now
in the topic on no live node. So two tabs (on one node or two) make one join, closing one
of them makes nothing, closing both makes one leave. When a node dies, the live node that
cleans up after it announces the leaves (``on_presence_expired``).

Events go to the topic's subscribers only, minus the user they are about (a user never
receives presence events about itself), and are never stored. When the backplane cannot
be reached, the decision falls back to this process's view: the event is announced here,
the other processes miss it, and their clients get ``resync`` when the link returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from tempest_ws._bounded import STOP_TIMEOUT, cancel_tasks
from tempest_ws.backplane.base import Backplane
from tempest_ws.exceptions import BackplaneError

__all__ = ["PRESENCE_JOIN", "PRESENCE_LEAVE", "PresenceSetting", "TopicPresence"]

logger = logging.getLogger("tempest_ws.hub")

PRESENCE_JOIN: Final = "presence.join"
"""Sent to a topic's members when a user's first connection subscribes to it (anywhere)."""
PRESENCE_LEAVE: Final = "presence.leave"
"""Sent to a topic's members when a user's last connection in it leaves (anywhere)."""

PresenceSetting = bool | Callable[[str], bool]
"""``WebSocketHub(presence=...)``: every topic, none, or the topics a predicate accepts."""

Announce = Callable[[str, str, str], Awaitable[None]]
"""``async (event type, topic, user)``: deliver one presence event to the topic."""


class TopicPresence:
    """Per-topic, per-user tab counts of this process and the events they cause."""

    def __init__(
        self, backplane: Backplane, announce: Announce, setting: PresenceSetting = False
    ) -> None:
        self._backplane = backplane
        self._announce = announce
        self._setting = setting
        self._counts: dict[str, dict[str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        """Whether presence is kept for any topic at all."""
        return self._setting is not False

    def tracks(self, topic: str) -> bool:
        """Whether presence is kept for ``topic`` (the predicate must be deterministic)."""
        setting = self._setting
        return setting(topic) if callable(setting) else setting

    def local_users(self, topic: str) -> set[str]:
        """Users with a subscribed connection to ``topic`` in this process."""
        return set(self._counts.get(topic, ()))

    def holds(self, topic: str, user: str) -> bool:
        """Whether ``user`` has a subscribed connection to ``topic`` in this process."""
        return user in self._counts.get(topic, ())

    def added(self, topic: str, user: str) -> asyncio.Task[None] | None:
        """A connection of ``user`` subscribed to ``topic``. Counted at once (so a close
        that follows is counted after it); returns the task that announces a resulting
        ``presence.join``, if this was the user's first tab here."""
        users = self._counts.setdefault(topic, {})
        users[user] = users.get(user, 0) + 1
        if users[user] > 1:
            return None
        decision = self._backplane.presence.topic_join(topic, user)
        return self._spawn(self._decide(decision, PRESENCE_JOIN, topic, user))

    def removed(self, topic: str, user: str, *, announce: bool = True) -> None:
        """A connection of ``user`` left ``topic`` (unsubscribed or closed). Never blocks.

        ``announce=False`` (the node is not running) only updates the count.
        """
        users = self._counts.get(topic)
        if users is None or user not in users:
            return
        users[user] -= 1
        if users[user] > 0:
            return
        del users[user]
        if not users:
            del self._counts[topic]
        if announce:
            decision = self._backplane.presence.topic_leave(topic, user)
            self._spawn(self._decide(decision, PRESENCE_LEAVE, topic, user))

    def expired(self, topic: str, user: str) -> None:
        """A dead node was the last to hold ``user`` in ``topic``: announce the leave
        (unless the user is back here meanwhile)."""
        if not self.holds(topic, user):
            self._spawn(self._announce(PRESENCE_LEAVE, topic, user))

    async def settle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait (at most ``timeout`` seconds) for pending announcements."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def stop(self, limit: float = STOP_TIMEOUT) -> None:
        """Cancel pending announcements (waiting ``limit`` seconds at most; the rest are
        abandoned and logged) and forget every count."""
        await cancel_tasks(list(self._tasks), "presence announcement", limit=limit)
        self._counts.clear()

    # -- announcements -----------------------------------------------------------------

    async def _decide(
        self, decision: asyncio.Future[bool], kind: str, topic: str, user: str
    ) -> None:
        try:
            changed = await decision
        except BackplaneError as exc:
            logger.warning("%s in topic %s decided by this process alone: %s", kind, topic, exc)
            changed = True
        if changed:
            await self._announce(kind, topic, user)

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("presence announcement failed", exc_info=task.exception())
