"""Where a message of a history topic sits, and the keys that carry it on the wire.

A message of a history topic carries its topic and `Position` as three top-level keys
after the usual three (``"topic"``, ``"offset"``, ``"epoch"``). The server stamps them
(``history/wire.py``); the Python client reads them back (`position_of()`) and yields
the message as a `StampedEnvelope`. Both sides import this module; neither imports the
other's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from pydantic import Field

from tempest_ws.wire.envelope import WSEnvelope

__all__ = [
    "EPOCH_KEY",
    "MAX_EPOCH_LENGTH",
    "MAX_TOPIC_LENGTH",
    "OFFSET_KEY",
    "TOPIC_KEY",
    "Position",
    "StampedEnvelope",
    "checked_position",
    "position_of",
]

MAX_TOPIC_LENGTH: Final = 256
"""Longest topic name, as the hub accepts them."""
MAX_EPOCH_LENGTH: Final = 64
"""Longest epoch a client may send back (ours are 21 hex characters)."""


class Position(NamedTuple):
    """Where a message sits in its topic: ``offset`` within ``epoch``.

    ``Position(0, epoch)`` is the position before the first message of an epoch.
    """

    offset: int
    epoch: str


TOPIC_KEY: Final = "topic"
"""Top-level key of the topic in a stamped frame."""
OFFSET_KEY: Final = "offset"
"""Top-level key of the offset in a stamped frame (also in ``subscribe`` data)."""
EPOCH_KEY: Final = "epoch"
"""Top-level key of the epoch in a stamped frame (also in ``subscribe`` data)."""


class StampedEnvelope(WSEnvelope):
    """A message of a history topic, with the topic and position its frame carried.

    The Python client yields one for every inbound message whose ``topic``/``offset``/
    ``epoch`` make a valid position (a replayed or a live message); a message with a
    malformed stamp, and a ``recovery`` envelope, stay plain `WSEnvelope`. It is
    a ``WSEnvelope`` (``isinstance`` holds, fields and immutability are the same), so
    code that ignores history keeps working. Compare with ``isinstance``, not ``==``:
    a pydantic model equals only models of its own class.

    ``encode_envelope`` writes the three envelope keys only: publishing one again
    through the hub gives it a new position on the topic it is published to, never the
    old one.
    """

    topic: str = Field(min_length=1, max_length=MAX_TOPIC_LENGTH)
    offset: int = Field(ge=0)
    epoch: str = Field(min_length=1, max_length=MAX_EPOCH_LENGTH)

    @property
    def position(self) -> Position:
        """``Position(offset, epoch)``, as kept in the client's ``positions``."""
        return Position(self.offset, self.epoch)

    @classmethod
    def stamp(cls, envelope: WSEnvelope, topic: str, position: Position) -> StampedEnvelope:
        """``envelope`` with ``topic`` and ``position``; the values are not checked again
        (they come from an envelope and a `position_of()` that were)."""
        return cls.model_construct(
            type=envelope.type,
            data=envelope.data,
            request_id=envelope.request_id,
            topic=topic,
            offset=position.offset,
            epoch=position.epoch,
        )


def checked_position(offset: Any, epoch: Any) -> Position | None:
    """``Position(offset, epoch)`` when both are valid (an int >= 0 that is not a bool,
    a string of 1 to ``MAX_EPOCH_LENGTH`` characters), else ``None``."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return None
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
        return None
    return Position(offset, epoch)


def position_of(message: Mapping[str, Any]) -> tuple[str, Position] | None:
    """The topic and position a decoded message carries, or ``None`` (not a history
    message, or malformed). What a client stores to resume."""
    topic = message.get(TOPIC_KEY)
    offset, epoch = message.get(OFFSET_KEY), message.get(EPOCH_KEY)
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC_LENGTH:
        return None
    position = checked_position(offset, epoch)
    return None if position is None else (topic, position)
