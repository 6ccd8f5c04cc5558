"""Building the hub's history from its arguments or the ``WS_HISTORY_*`` settings.

`history_from_settings()` turns the settings into a store and a policy;
`history_spec()` checks the hub's ``history`` / ``history_policy`` arguments (before
anything is built), and `build_history()` makes the
[`HubHistory`][tempest_ws.hub.history._history.HubHistory] from them.
"""

from __future__ import annotations

from typing import NamedTuple

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.history.base import HistoryStore
from tempest_ws.history.memory import MemoryHistory
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.hub._node import Node
from tempest_ws.hub.history._history import HubHistory
from tempest_ws.settings import WebSocketSettings

__all__ = ["HistorySpec", "build_history", "history_from_settings", "history_spec"]


class HistorySpec(NamedTuple):
    """What a hub's history is made of: its store, its policy, its gap timeout."""

    store: HistoryStore
    policy: HistoryPolicy
    gap_timeout: float


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


def history_spec(
    store: HistoryStore | None, policy: HistoryPolicy | None, gap_timeout: float
) -> HistorySpec | None:
    """The history the hub's ``history``/``history_policy`` arguments ask for (``None``
    when neither is given): a [`MemoryHistory`][tempest_ws.history.MemoryHistory] when
    only a policy is given.

    Raises:
        ConfigurationError: a store without a policy (given, or its own ``policy``).
    """
    chosen = policy or getattr(store, "policy", None)
    if store is not None and not isinstance(chosen, HistoryPolicy):
        raise ConfigurationError("a history store needs a history_policy")
    if not isinstance(chosen, HistoryPolicy):
        return None
    return HistorySpec(store if store is not None else MemoryHistory(chosen), chosen, gap_timeout)


def build_history(spec: HistorySpec, node: Node, queue_size: int) -> HubHistory:
    """The hub's history over ``node`` (the node, built first, reaches its ``on_packet``
    through its ``sequenced`` callback), with the store's one-round-trip append and
    publish when it offers one for the node's backplane, and a ``MemoryHistory``'s
    ``append_now`` (unless a subclass changed ``append``)."""
    store = spec.store
    joined_with = getattr(store, "joined_with", None)  # an optional store capability
    append_now = None
    if isinstance(store, MemoryHistory) and type(store).append is MemoryHistory.append:
        append_now = store.append_now
    return HubHistory(
        spec.store,
        spec.policy,
        node.registry,
        node,
        gap_timeout=spec.gap_timeout,
        queue_size=queue_size,
        append_publish=None if joined_with is None else joined_with(node.backplane),
        append_now=append_now,
    )
