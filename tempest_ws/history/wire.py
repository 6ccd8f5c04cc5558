"""How positions travel: in outbound envelopes, in ``subscribe``, in the ``recovery`` answer.

**A message of a history topic** carries its topic and position as top-level keys after
the usual three (older clients ignore them; [`WSEnvelope`][tempest_ws.wire.envelope.WSEnvelope]
ignores unknown keys)::

    {"type":"chat.message","data":{...},"request_id":null,"topic":"chat:1","offset":42,"epoch":"065a1f3c2b9d1e5d09c7a"}

`stamp_frame()` adds them to an already serialized frame by splicing strings: the
payload is never parsed or serialized again, and the result is what ``json.dumps`` of
the whole object would give.

**A client resuming** sends its last position in its ``subscribe``::

    {"type":"subscribe","data":{"topic":"chat:1","offset":42,"epoch":"065a1f3c2b9d1e5d09c7a"},"request_id":null}

(`requested_position()` reads it), gets the missed messages (each stamped as above),
then one ``recovery`` envelope (`recovery_envelope()`), then live messages::

    {"type":"recovery","data":{"topic":"chat:1","recovered":true,"replayed":3,"offset":45,"epoch":"065a1f3c2b9d1e5d09c7a"},"request_id":null}

``recovered: false`` means "reload this topic's state from your source of truth, then
continue from ``offset``/``epoch``" (a first subscribe, without a position, is answered
that way too: the client has nothing yet).

`StampedEnvelope` is a stamped message as the Python client yields it: a
[`WSEnvelope`][tempest_ws.wire.envelope.WSEnvelope] that keeps the three stamp keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tempest_ws.history.base import Recovery
from tempest_ws.wire._positions import (
    EPOCH_KEY,
    OFFSET_KEY,
    TOPIC_KEY,
    Position,
    StampedEnvelope,
    checked_position,
    position_of,
)
from tempest_ws.wire.envelope import RECOVERY

__all__ = [
    "EPOCH_KEY",
    "OFFSET_KEY",
    "RECOVERY",
    "TOPIC_KEY",
    "StampedEnvelope",
    "Stamper",
    "is_compact",
    "position_of",
    "recovery_envelope",
    "requested_position",
    "stamp_frame",
    "stamp_middle",
    "stamp_parts",
]


def _json_string(text: str) -> str:
    # Most topics and every epoch we make are plain ASCII: no escaping needed.
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


def stamp_middle(topic: str) -> str:
    """What `stamp_frame()` puts between a compact frame's last value and the offset:
    ``,"topic":"<topic>","offset":`` (see `stamp_parts()`)."""
    return f',"{TOPIC_KEY}":{_json_string(topic)},"{OFFSET_KEY}":'


def is_compact(frame: str) -> bool:
    """Whether `stamp_parts()` cuts ``frame`` simply: only its closing brace, then a
    comma (a non-empty JSON object without whitespace before its end, as
    [`encode_envelope()`][tempest_ws.wire.envelope.encode_envelope] makes them)."""
    if frame[:1] != "{" or frame[-1:] != "}":
        return False
    last = frame[-2]
    return last != "{" and not last.isspace()


def stamp_parts(frame: str, topic: str) -> tuple[int, str]:
    """How `stamp_frame()` splices ``frame``: ``(drop, middle)``, where ``drop`` is the
    number of trailing characters cut (the closing brace, and whitespace before it) and
    ``middle`` the text put before the offset (``,"topic":"<topic>","offset":``).

    ``stamp_frame(frame, topic, position)`` is ``frame[:len(frame) - drop] + middle``,
    then the offset, ``,"epoch":``, the epoch as a JSON string and ``}``. The dropped
    characters are ASCII, so ``drop`` counts UTF-8 bytes as well (for a store that
    stamps on a server).

    Raises:
        ValueError: ``frame`` does not end with ``}`` or start with ``{``.
    """
    if not frame or frame[0] != "{" or frame[-1] != "}":
        raise ValueError("frame must be a serialized JSON object")
    before = frame[-2:-1]
    if before == "{" or before.isspace():  # an empty or pretty-printed object (never ours)
        head = frame[:-1].rstrip()
        drop, separator = len(frame) - len(head), "" if head == "{" else ","
    else:
        drop, separator = 1, ","
    return drop, f'{separator}"{TOPIC_KEY}":{_json_string(topic)},"{OFFSET_KEY}":'


def stamp_frame(frame: str, topic: str, position: Position) -> str:
    """``frame`` with ``"topic"``, ``"offset"`` and ``"epoch"`` added as its last keys.

    ``frame`` is a serialized JSON object without those keys (as
    [`encode_envelope()`][tempest_ws.wire.envelope.encode_envelope] makes them); only its closing
    brace
    is
    looked at. Costs one string concatenation the size of the frame.

    Raises:
        ValueError: ``frame`` does not end with ``}`` or start with ``{``.
    """
    drop, middle = stamp_parts(frame, topic)
    return f'{frame[:-drop]}{middle}{position[0]:d},"{EPOCH_KEY}":{_json_string(position[1])}}}'


class Stamper:
    """`stamp_frame()` for one topic, with the topic's JSON and the stamp's end for the
    last epoch seen computed once (the hub keeps one per topic it follows)."""

    __slots__ = ("_epoch", "_middle", "_tail", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._middle = stamp_middle(topic)
        self._epoch = ""
        self._tail = f',"{EPOCH_KEY}":""}}'

    def __call__(self, frame: str, position: Position) -> str:
        """``stamp_frame(frame, self.topic, position)``.

        Raises:
            ValueError: ``frame`` does not end with ``}`` or start with ``{``.
        """
        if not is_compact(frame):  # not an object (raises), or empty or pretty-printed
            return stamp_frame(frame, self.topic, position)
        return self.compact(frame, position)

    def compact(self, frame: str, position: Position) -> str:
        """``self(frame, position)`` for a frame known to be compact (`is_compact()`), as
        every frame [`encode_envelope()`][tempest_ws.wire.envelope.encode_envelope] makes
        is: the frame is not looked at, only cut before its closing brace (the hub's
        publishing path, once per message)."""
        offset, epoch = position
        if epoch is not self._epoch and epoch != self._epoch:
            self._epoch, self._tail = epoch, f',"{EPOCH_KEY}":{_json_string(epoch)}}}'
        return f"{frame[:-1]}{self._middle}{offset}{self._tail}"


def requested_position(data: Any) -> Position | None:
    """The position a ``subscribe`` envelope's ``data`` resumes from, or ``None`` when it
    carries none (a first subscribe).

    Raises:
        ValueError: ``offset`` or ``epoch`` is present but not an int >= 0 and a string
            of 1 to 64 characters, or only one of them is present.
    """
    if not isinstance(data, Mapping):
        return None
    offset, epoch = data.get(OFFSET_KEY), data.get(EPOCH_KEY)
    if offset is None and epoch is None:
        return None
    position = checked_position(offset, epoch)
    if position is None:
        raise ValueError("offset must be an int >= 0 and epoch a string of 1 to 64 characters")
    return position


def recovery_envelope(
    topic: str, recovery: Recovery, *, replayed: int, request_id: str | None = None
) -> str:
    """The serialized ``recovery`` envelope sent after ``replayed`` replayed messages.

    ``offset``/``epoch`` are where the client continues from: ``recovery.position``.
    """
    data = {
        "topic": topic,
        "recovered": recovery.recovered,
        "replayed": replayed,
        OFFSET_KEY: recovery.position.offset,
        EPOCH_KEY: recovery.position.epoch,
    }
    envelope = {"type": RECOVERY, "data": data, "request_id": request_id}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
