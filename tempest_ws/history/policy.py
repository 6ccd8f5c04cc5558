"""``HistoryPolicy``: which topics keep history, and for how long.

History is opt-in per topic pattern. A pattern is a topic name where ``*`` stands for
any run of characters (``:`` included, possibly none): ``chat:*`` matches ``chat:1`` and
``chat:room:7``; ``*`` matches every topic; every other character is literal (``?``,
``[`` and ``]`` too). No pattern: no topic keeps history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Self

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.settings import WebSocketSettings

__all__ = ["HistoryPolicy"]


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    alternatives = ("(?:" + ".*".join(map(re.escape, p.split("*"))) + ")" for p in patterns)
    return re.compile("|".join(alternatives), re.DOTALL)


@dataclass(frozen=True)
class HistoryPolicy:
    """Which topics keep history, bounded by count **and** age.

    Args:
        topics: patterns of the topics that keep history (see the module docstring).
        max_messages: messages kept per topic (Redis keeps about that many: it trims
            whole stream nodes at once, so a few more may stay).
        max_age: seconds a message is kept; an older one is never replayed.
        meta_ttl: seconds a topic's offset and epoch outlive its last message. A topic
            quiet for longer starts a new epoch with its next message (clients then get
            ``recovered: false``, which is right: everything they missed is older than
            ``max_age`` anyway). Raised to ``max_age`` when smaller.
        recovery_limit: most messages replayed to one resubscribing client; a client
            that missed more gets ``recovered: false`` and reloads its state.

    Raises:
        ConfigurationError: a bound is not positive, or a pattern is empty.
    """

    topics: tuple[str, ...] = ()
    max_messages: int = 1000
    max_age: float = 300.0
    meta_ttl: float = 86_400.0
    recovery_limit: int = 1000
    _matcher: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        topics = tuple(self.topics)
        if any(not isinstance(p, str) or not p for p in topics):
            raise ConfigurationError("history topic patterns must be non-empty strings")
        if self.max_messages < 1 or self.recovery_limit < 1:
            raise ConfigurationError("max_messages and recovery_limit must be at least 1")
        if not self.max_age > 0 or not self.meta_ttl > 0:
            raise ConfigurationError("max_age and meta_ttl must be positive")
        object.__setattr__(self, "topics", topics)
        object.__setattr__(self, "meta_ttl", max(self.meta_ttl, self.max_age))
        object.__setattr__(self, "_matcher", _compile(topics))

    @classmethod
    def from_settings(cls, settings: WebSocketSettings) -> Self:
        """The policy the ``WS_HISTORY_*`` settings describe."""
        return cls(
            topics=tuple(settings.WS_HISTORY_TOPICS),
            max_messages=settings.WS_HISTORY_MAX_MESSAGES,
            max_age=settings.WS_HISTORY_MAX_AGE_SECONDS,
            meta_ttl=settings.WS_HISTORY_META_TTL_SECONDS,
            recovery_limit=settings.WS_HISTORY_RECOVERY_LIMIT,
        )

    @property
    def enabled(self) -> bool:
        """Whether any topic keeps history."""
        return self._matcher is not None

    def keeps(self, topic: str) -> bool:
        """Whether ``topic`` keeps history (one regular-expression match)."""
        matcher = self._matcher
        return matcher is not None and matcher.fullmatch(topic) is not None
