"""Building the hub's history and its public history methods.

`history_from_settings()` and `make_history()` turn the hub's ``history`` /
``history_policy`` arguments (or the ``WS_HISTORY_*`` settings) into a
[`HubHistory`][tempest_ws.hub.history._history.HubHistory]; `HistoryAccess`, a base of the
hub, holds ``keeps_history``, ``history`` and ``history_stats``.
"""

from __future__ import annotations

from tempest_ws._types import Topic
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.history.base import HistoryPage, HistoryStore
from tempest_ws.history.memory import MemoryHistory
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.hub._node import Node
from tempest_ws.hub.history._history import HubHistory
from tempest_ws.hub.history._topic import HistoryStats
from tempest_ws.settings import WebSocketSettings

__all__ = ["HistoryAccess", "HistoryStats", "history_from_settings", "make_history"]

_NO_HISTORY = HistoryStats()


def history_from_settings(
    settings: WebSocketSettings, store: HistoryStore | None
) -> tuple[HistoryStore | None, HistoryPolicy | None]:
    """The store and policy ``WS_HISTORY_*`` describe: a ``RedisHistory`` with
    ``WS_REDIS_URL`` (unless ``store`` is given), none when no topic keeps history."""
    policy = HistoryPolicy.from_settings(settings)
    if not policy.enabled:
        return store, None
    if store is None and settings.WS_REDIS_URL:
        from tempest_ws.history.redis import RedisHistory

        store = RedisHistory.from_settings(settings)
    return store, policy


def make_history(
    store: HistoryStore | None,
    policy: HistoryPolicy | None,
    node: Node,
    gap_timeout: float,
    queue_size: int,
) -> HubHistory | None:
    """The hub's history from its ``history``/``history_policy`` arguments (``None``
    when neither is given), wired to receive the node's positioned packets.

    Raises:
        ConfigurationError: a store without a policy (given, or its own ``policy``).
    """
    chosen = policy or getattr(store, "policy", None)
    if store is not None and not isinstance(chosen, HistoryPolicy):
        raise ConfigurationError("a history store needs a history_policy")
    if not isinstance(chosen, HistoryPolicy):
        return None
    store = store if store is not None else MemoryHistory(chosen)
    joined_with = getattr(store, "joined_with", None)  # an optional store capability
    history = HubHistory(
        store,
        chosen,
        node.registry,
        node,
        gap_timeout=gap_timeout,
        queue_size=queue_size,
        append_publish=None if joined_with is None else joined_with(node.backplane),
    )
    node.sequenced = history.on_packet
    return history


class HistoryAccess:
    """The hub's public history methods (a base of the hub)."""

    _history: HubHistory | None

    def keeps_history(self, topic: Topic) -> bool:
        """Whether ``topic``'s messages get offsets and can be replayed."""
        return self._history is not None and self._history.keeps(topic)

    async def history(
        self, topic: Topic, *, since: int | None = None, limit: int = 100
    ) -> HistoryPage:
        """Up to ``limit`` messages of ``topic`` the history still holds, oldest first:
        the newest ones, or the oldest ones after offset ``since`` (page forward from a
        page's last offset). Frames are unstamped; ``page.position`` is the topic's
        latest position, whose epoch the offsets belong to. For HTTP endpoints:
        authorize the caller for the topic first, as for a subscription.

        Raises:
            ValueError: the topic keeps no history, or ``since``/``limit`` out of range.
            BackplaneError: the history store is unreachable.
        """
        if self._history is None:
            raise ValueError("this hub keeps no history")
        return await self._history.page(topic, since=since, limit=limit)

    def history_stats(self) -> HistoryStats:
        """What the message history did in this process, as plain numbers (no I/O):
        appends, replays, gaps filled or given up, notices, stale drops, seam overflows
        and the topics followed now. All zero on a hub that keeps no history.
        [`WebSocketMetrics`][tempest_ws.observe.metrics.WebSocketMetrics] exports them."""
        return _NO_HISTORY if self._history is None else self._history.stats()
