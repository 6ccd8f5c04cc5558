"""History positions on the client's side: what it received, what it handed over, resuming.

A message of a history topic carries ``topic``/``offset``/``epoch`` as top-level keys
(``tempest_ws.history.wire``). `ClientPositions` keeps two maps from topic to
[`Position`][tempest_ws.history.Position]:

- **received**: the last position read from the socket, whether or not the application
  took the message yet. The client resumes from it when it subscribes again, so messages
  still waiting in its inbox are neither lost nor replayed by the server.
- **handed**: the last position handed to the application (yielded by the iterator or
  returned by ``request()``). This is the public ``client.positions``: an application
  that stores it after handling a message gets at-least-once delivery across a restart.

Both are seeded from ``positions=`` and updated from stamped messages and from
``recovery`` envelopes. ``unsubscribe`` forgets a topic's position (as the browser client
does): messages of it still in flight record nothing until the topic is subscribed again,
and that subscription starts fresh (``recovered: false``). Malformed positions are
ignored with a warning, never raised. No I/O here; ``tempest_ws.client`` drives it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.wire._positions import EPOCH_KEY, OFFSET_KEY, TOPIC_KEY, Position, position_of

__all__ = ["ClientPositions", "Mark", "RecoveryNotice"]

logger = logging.getLogger("tempest_ws.client")

Mark = tuple[str, Position]
"""A topic and the position of one message in it."""


class RecoveryNotice(NamedTuple):
    """A valid ``recovery`` envelope's ``data``: the topic, the flag, where to continue."""

    topic: str
    recovered: bool
    position: Position


class ClientPositions:
    """The received and handed positions of one client (see the module docstring).

    Raises:
        ConfigurationError: a seed that is not ``{topic: (offset >= 0, epoch)}``, with a
            topic of 1 to 256 and an epoch of 1 to 64 characters.
    """

    def __init__(self, owner: str, seed: Mapping[str, tuple[int, str]] | None = None) -> None:
        self._owner = owner
        self.received: dict[str, Position] = {}
        self.handed: dict[str, Position] = {}
        self.view: Mapping[str, Position] = MappingProxyType(self.handed)
        self._forgotten: set[str] = set()
        for topic, position in (seed or {}).items():
            found = None
            if isinstance(position, tuple) and len(position) == 2:
                stamp = {TOPIC_KEY: topic, OFFSET_KEY: position[0], EPOCH_KEY: position[1]}
                found = position_of(stamp)
            if found is None:
                raise ConfigurationError(
                    "positions must map topics to (offset >= 0, epoch of 1 to 64 characters)"
                )
            self.received[topic] = self.handed[topic] = found[1]

    def subscribe_data(self, topic: str) -> dict[str, Any]:
        """``data`` of a ``subscribe``: the topic, plus the received position when known.
        The topic's positions are tracked again from now on."""
        self._forgotten.discard(topic)
        position = self.received.get(topic)
        if position is None:
            return {"topic": topic}
        return {"topic": topic, OFFSET_KEY: position.offset, EPOCH_KEY: position.epoch}

    def receive(self, message: Mapping[str, Any]) -> Mark | None:
        """Note the position an inbound message carries; return it (``None``: none).

        A message with an ``offset`` or ``epoch`` key that does not make a valid position
        is logged and treated as a message without a position.
        """
        found = position_of(message)
        if found is None:
            if OFFSET_KEY in message or EPOCH_KEY in message:
                logger.warning(
                    "client %s: ignored a malformed history position on a %r message",
                    self._owner,
                    str(message.get("type"))[:64],
                )
            return None
        if found[0] in self._forgotten:
            return None
        self.received[found[0]] = found[1]
        return found

    def recovery(self, data: Any) -> RecoveryNotice | None:
        """Read a ``recovery`` envelope's ``data`` and note where to continue from.

        Returns ``None`` (with a warning) when it lacks a valid topic, ``recovered``
        flag, ``offset`` or ``epoch``.
        """
        found = position_of(data) if isinstance(data, Mapping) else None
        recovered = data.get("recovered") if isinstance(data, Mapping) else None
        if found is None or not isinstance(recovered, bool):
            logger.warning("client %s: ignored a malformed recovery envelope", self._owner)
            return None
        topic, position = found
        if topic not in self._forgotten:
            self.received[topic] = position
        return RecoveryNotice(topic, recovered, position)

    def hand(self, mark: Mark) -> None:
        """The message at ``mark`` reached the application: it now counts as handled."""
        if mark[0] not in self._forgotten:
            self.handed[mark[0]] = mark[1]

    def forget(self, topic: str) -> None:
        """The application unsubscribed ``topic``: drop its positions and record none
        until it subscribes again."""
        self._forgotten.add(topic)
        self.received.pop(topic, None)
        self.handed.pop(topic, None)
