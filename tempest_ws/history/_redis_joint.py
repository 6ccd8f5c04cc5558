"""The append-and-publish of [`RedisHistory`][tempest_ws.history.redis.RedisHistory] as a
hub calls it: one plain call per message, no coroutine of its own.

[`joint()`][tempest_ws.history._redis_joint.joint] returns the `AppendPublish` that
``RedisHistory.joined_with()`` hands to a hub. Per topic it keeps the script arguments
that do not change from one message to the next (the keys, the Redis channel, the packet
header and the stamp's middle, as bytes), so a message costs encoding its frame and one
concatenation; the caller awaits ``AppendQueue.append`` (sent at once when no append is
in flight, queued otherwise). A frame
`stamp_parts()` would not cut simply, or a value that is not a ``str``, goes through
``RedisHistory.append_publish`` instead (which checks and raises).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tempest_ws.history.base import AppendPublish, Position, check_topic
from tempest_ws.history.wire import is_compact, stamp_middle

__all__ = ["MAX_TOPICS", "joint"]

MAX_TOPICS = 1024
"""Topics whose arguments are kept; the table is emptied when it would grow past it."""

_Parts = tuple[str, str, tuple[bytes, bytes], bytes, bytes, bytes]
"""channel, head, keys, Redis channel (bytes), head (bytes), stamp middle (bytes)."""


def joint(
    append: Callable[[tuple[bytes, bytes], list[bytes]], Awaitable[Position]],
    keys: Callable[[str], tuple[bytes, bytes]],
    redis_channel: Callable[[str], str],
    fallback: Callable[[str, str, str, str], Awaitable[Position]],
) -> AppendPublish:
    """An `AppendPublish` appending through ``append`` (``AppendQueue.append``).

    Args:
        append: appends one message (the topic's keys, the message's script arguments).
        keys: a topic's Redis keys.
        redis_channel: the Redis channel of a backplane channel.
        fallback: ``RedisHistory.append_publish`` (given the Redis channel).
    """
    parts: dict[str, _Parts] = {}

    def append_publish(topic: str, frame: str, channel: str, head: str) -> Awaitable[Position]:
        known = parts.get(topic)
        if known is None or known[0] != channel or known[1] != head:
            check_topic(topic)
            if len(parts) >= MAX_TOPICS:
                parts.clear()
            known = parts[topic] = (
                channel,
                head,
                keys(topic),
                redis_channel(channel).encode(),
                head.encode(),
                stamp_middle(topic).encode(),
            )
        if not isinstance(frame, str) or not is_compact(frame):
            return fallback(topic, frame, redis_channel(channel), head)
        data = frame.encode()
        # The script's arguments for one message that publishes too (see _redis_scripts).
        return append(known[2], [data, known[3], known[4], data[:-1] + known[5]])

    return append_publish
