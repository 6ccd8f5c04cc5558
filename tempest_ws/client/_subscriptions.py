"""The topics a client keeps subscribed, and the server's answers to its ``subscribe``.

Every ``subscribe`` the client sends (from ``subscribe()`` or again on a new connection)
carries a fresh ``request_id``, so the server's answer can be told apart: an ``ack`` (or
any other reply carrying the id) confirms the topic, an ``error`` (``forbidden``,
``invalid_data``...) refuses it. `Subscriptions` remembers the topics in the order
they were subscribed, which ``request_id`` belongs to which topic on the current
connection, and turns a refusal into a [`RequestError`][tempest_ws.exceptions.RequestError]
after removing the topic, so it is not sent again on the next connection. A refusal of
an older ``subscribe`` of a topic that was unsubscribed and subscribed again since then
removes nothing. No I/O here; ``tempest_ws.client`` sends the frames.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from tempest_ws.exceptions import RequestError
from tempest_ws.wire.envelope import ERROR, SUBSCRIBE, WSEnvelope, encode_envelope

__all__ = ["Answer", "Subscriptions", "request_error"]


def request_error(envelope: WSEnvelope) -> RequestError:
    """The `RequestError` an ``error`` envelope stands for."""
    data = envelope.data if isinstance(envelope.data, dict) else {}
    code, message, topic = data.get("code"), data.get("message"), data.get("topic")
    return RequestError(
        message if isinstance(message, str) and message else "the server refused the request",
        code=code if isinstance(code, str) and code else "error",
        topic=topic if isinstance(topic, str) else None,
        envelope=envelope,
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """The server answered the ``subscribe`` of ``topic``; ``error`` when it refused.

    ``removed`` is true when the refusal removed the topic from the subscriptions.
    """

    topic: str
    error: RequestError | None = None
    removed: bool = False


class Subscriptions:
    """One client's topics and the ``subscribe`` requests awaiting an answer.

    ``owner`` (the client id) prefixes every ``request_id``, which a counter makes unique.
    """

    def __init__(self, owner: str) -> None:
        self.topics: dict[str, None] = {}
        self._owner = owner
        self._counter = itertools.count(1)
        self._pending: dict[str, str] = {}  # request_id -> topic, on this connection
        self._latest: dict[str, str] = {}  # topic -> request_id of its last subscribe

    def add(self, topic: str) -> bool:
        """Remember ``topic``; ``False`` when it already was."""
        if topic in self.topics:
            return False
        self.topics[topic] = None
        return True

    def remove(self, topic: str) -> bool:
        """Forget ``topic`` (a late answer to its ``subscribe`` then changes nothing)."""
        self._latest.pop(topic, None)
        return self.topics.pop(topic, False) is None

    def request(self, topic: str, data: dict[str, Any]) -> tuple[str, str]:
        """``(request_id, frame)`` of a ``subscribe`` with ``data``, awaiting its answer."""
        request_id = f"sub-{self._owner}-{next(self._counter)}"
        self._pending[request_id] = topic
        self._latest[topic] = request_id
        frame = encode_envelope({"type": SUBSCRIBE, "data": data, "request_id": request_id})
        return request_id, frame

    def new_connection(self) -> None:
        """A new connection: answers to what was sent on the last one cannot come."""
        self._pending.clear()

    def answer(self, envelope: WSEnvelope) -> Answer | None:
        """Read ``envelope`` as the answer to a ``subscribe``; ``None`` when it is not one.

        Only the first envelope carrying a ``subscribe``'s ``request_id`` answers it (on
        a history topic a ``recovery`` with the same id follows the ``ack``).
        """
        request_id = envelope.request_id
        topic = None if request_id is None else self._pending.pop(request_id, None)
        if topic is None:
            return None
        if envelope.type != ERROR:
            return Answer(topic)
        removed = self._latest.get(topic) == request_id
        if removed:
            self.remove(topic)
        return Answer(topic, request_error(envelope), removed)
