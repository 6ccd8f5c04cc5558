"""The history contract: what a hub needs to give reconnecting clients what they missed.

A history store keeps the last messages of a topic, each under an **offset** (1, 2, 3...
per topic, assigned at append, atomically across every process sharing the store) within
the topic's **epoch** (an opaque id that changes whenever the store lost the topic's
sequence: a process restart for [`MemoryHistory`][tempest_ws.history.MemoryHistory], Redis data
loss or expiry for [`RedisHistory`][tempest_ws.history.RedisHistory]). A pair ``(offset, epoch)``
is a `Position`. A client that stored the position of the last message it got can
ask for everything after it; the answer says whether that is *everything*
(``recovered``), or whether messages may be gone (history trimmed by count or age, epoch
changed), in which case the application reloads its state.

Offsets within an epoch are dense: every append takes the next integer, nothing is ever
removed from the middle, trimming removes the oldest. So the messages after offset ``n``
are exactly the last ``latest - n`` ones, when the history still holds that many.

The store keeps frames as opaque strings (the serialized envelope, without its
position); it knows nothing of sockets or envelopes. The same test body
(``tests/redis/test_history_contract.py``) runs against every implementation.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from tempest_ws.wire._positions import MAX_EPOCH_LENGTH, MAX_TOPIC_LENGTH, Position

__all__ = [
    "MAX_EPOCH_LENGTH",
    "MAX_TOPIC_LENGTH",
    "AppendPublish",
    "Entry",
    "HistoryPage",
    "HistoryStore",
    "Position",
    "Recovery",
    "check_limit",
    "check_offset",
    "check_topic",
    "new_epoch",
]


class Entry(NamedTuple):
    """One message of a topic's history: its offset and its frame (unstamped)."""

    offset: int
    frame: str


@dataclass(frozen=True, slots=True)
class Recovery:
    """The answer to "what did I miss since this position?".

    Attributes:
        entries: the missed messages, oldest first, offsets consecutive from the asked
            offset + 1. Empty when ``recovered`` is false.
        recovered: every message after the asked position is in ``entries``. False when
            the epoch changed, the history no longer reaches back that far (count or
            age), more than ``limit`` messages were missed, or the asked offset is ahead
            of the topic.
        position: the topic's latest position when the history was read: the position
            of the last entry when recovered; otherwise where the client continues from
            after reloading its state.
    """

    entries: tuple[Entry, ...]
    recovered: bool
    position: Position


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Part of a topic's history, for HTTP endpoints: ``entries`` oldest first, and the
    topic's latest ``position`` when it was read (its epoch tells whether offsets a
    caller kept still mean anything)."""

    entries: tuple[Entry, ...]
    position: Position


# --8<-- [start:protocol]
class AppendPublish(Protocol):
    """Append a message and publish it to the other nodes in one step (one round trip).

    What a store offers for a backplane on the same server
    ([`joined_with()`][tempest_ws.history.RedisHistory.joined_with]): it appends ``frame`` to
    ``topic``, then publishes on the backplane channel ``channel`` the packet whose header
    is ``head`` (cut before the position, as
    `positioned_head()` makes it) completed with the
    new position, and ``frame`` stamped with it. Returns the position. Raises
    [`BackplaneError`][tempest_ws.exceptions.BackplaneError] as ``HistoryStore.append`` does.
    An ``async def`` does; so does a plain function returning an awaitable (a future).
    """

    def __call__(self, topic: str, frame: str, channel: str, head: str) -> Awaitable[Position]:
        """Append and publish; the awaitable gives the position."""
        ...


class HistoryStore(Protocol):
    """Bounded per-topic history with offsets and epochs. Five async methods.

    Every method validates its arguments (``ValueError``) before any I/O. A store that
    talks to a server raises [`BackplaneError`][tempest_ws.exceptions.BackplaneError] when it is
    unreachable or slower than its timeout; it never waits for the server to come back.
    """

    async def append(self, topic: str, frame: str) -> Position:
        """Store ``frame`` as the next message of ``topic``; return its position.

        Offsets increase by exactly one per append within an epoch, whichever process
        appends. The oldest messages beyond the count or age bound are trimmed.

        Raises:
            BackplaneError: the store could not be reached or did not answer in time.
                The frame may or may not have been stored (never twice: appends are
                not retried).
        """
        ...

    async def since(self, topic: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        """The messages of ``topic`` after ``Position(offset, epoch)``, at most ``limit``.

        All or nothing: when more than ``limit`` were missed, or some are gone, the
        answer is ``recovered=False`` with no entries.

        Raises:
            BackplaneError: the store could not be reached or did not answer in time.
        """
        ...

    async def latest(self, topic: str) -> Position:
        """The position of ``topic``'s last message (offset 0 when it has none yet).

        Starts the topic's epoch if it has none, so that a position handed to a client
        now stays meaningful when the first message comes.

        Raises:
            BackplaneError: the store could not be reached or did not answer in time.
        """
        ...

    async def history(self, topic: str, *, since: int | None = None, limit: int) -> HistoryPage:
        """Up to ``limit`` messages of ``topic`` still held: the newest ones, or with
        ``since`` the oldest ones after that offset (page forward from the last offset
        of a page). Offsets are those of the page's ``position.epoch``.

        Raises:
            BackplaneError: the store could not be reached or did not answer in time.
        """
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent; the store may be used again afterwards."""
        # --8<-- [end:protocol]


def check_topic(topic: str) -> None:
    """Raise ``ValueError`` unless ``topic`` is a non-empty string of at most 256."""
    if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic must be a non-empty string of at most {MAX_TOPIC_LENGTH}")


def check_offset(offset: int) -> None:
    """Raise ``ValueError`` unless ``offset`` is an int >= 0 (not a bool)."""
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError("offset must be an int >= 0")


def check_limit(limit: int) -> None:
    """Raise ``ValueError`` unless ``limit`` is an int >= 1 (not a bool)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError("limit must be an int >= 1")


def new_epoch(now_us: int | None = None) -> str:
    """A fresh epoch: the creation time (Unix µs, 13 hex digits) then 8 random hex digits.

    Epochs of one topic therefore compare in creation order as plain strings (up to the
    clock skew between the machines that created them), which lets a node tell a
    message of the new epoch from a stale one of the old epoch still in flight.
    """
    us = time.time_ns() // 1_000 if now_us is None else now_us
    return f"{us:013x}{secrets.token_hex(4)}"
