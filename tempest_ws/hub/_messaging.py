"""The methods of ``WebSocketHub`` that move messages: deliveries, topics, presence, history.

[`HubMessaging`][tempest_ws.hub._messaging.HubMessaging] is a complete class of its own:
the [`Delivery`][tempest_ws.hub._delivery.Delivery], the
[`Membership`][tempest_ws.hub._membership.Membership] and the
[`HubHistory`][tempest_ws.hub.history._history.HubHistory] it works through are passed to
its constructor, and it shares no attribute with the hub (its own are name-mangled).
``WebSocketHub`` builds those parts (and owns the connections and the lifecycle); it
inherits these methods so that its documentation stays one class: the public surface,
with its documentation, is too large for one module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tempest_ws._types import Topic, UserId
from tempest_ws.history.base import HistoryPage, Position
from tempest_ws.hub._authz import TopicAuthorizer
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._delivery import Delivery
from tempest_ws.hub._membership import Membership
from tempest_ws.hub.history._history import HubHistory
from tempest_ws.hub.history._topic import HistoryStats
from tempest_ws.wire._replies import error_reply, reply_envelope
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import ACK, EnvelopeLike, encode_envelope

__all__ = ["HubMessaging"]

_NO_HISTORY = HistoryStats()


class HubMessaging:
    """Deliveries, subscriptions, topic authorization, presence and history of a hub.

    Args:
        delivery: the hub's deliveries.
        membership: the hub's registration and subscriptions.
        history: the hub's history, if it keeps one.
    """

    def __init__(
        self, delivery: Delivery, membership: Membership, history: HubHistory | None
    ) -> None:
        self.__delivery = delivery
        self.__membership = membership
        self.__history = history

    # -- deliveries ---------------------------------------------------------------

    async def broadcast(
        self,
        envelope: EnvelopeLike,
        topic: Topic | None = None,
        *,
        exclude: str | Iterable[str] | None = None,
        exclude_users: UserId | Iterable[UserId] | None = None,
        everyone: bool = False,
        ephemeral: bool = False,
    ) -> int:
        """Send to everyone, or to ``topic``'s subscribers, on every node, minus the
        exclusions.

        ``exclude`` takes connection ids, ``exclude_users`` user ids (one or an iterable),
        applied on every node. Returns how many connections *of this process* it was
        queued for: other nodes deliver to theirs uncounted, so this is no delivery
        count (``0`` is normal where the topic's users are on other nodes). With
        ``require_topic=True`` a broadcast to everyone needs ``everyone=True``.

        On a topic that keeps history, the message is first appended (it gets its
        offset) and goes out stamped with its position; when the append fails it goes
        out unstamped (it cannot be replayed) and the call raises. ``ephemeral=True``
        delivers live only: never stored nor stamped, even there (typing indicators,
        receipts and presence events go out this way).

        Raises:
            ValueError: no ``topic`` on a ``require_topic`` hub, without ``everyone``.
            BackplaneError: the other nodes may not get it (local delivery happened), or
                the history store failed (delivery happened without a position).
        """
        return await self.__delivery.broadcast(
            envelope, topic, exclude, exclude_users, everyone, ephemeral
        )

    async def send_to(self, user_id: UserId, envelope: EnvelopeLike) -> int:
        """Send to every connection (every tab, every node) of ``user_id``.

        Returns how many of this process's connections got it.

        Raises:
            BackplaneError: the other nodes may not get it (local delivery happened).
        """
        return await self.__delivery.send_to(str(user_id), envelope)

    async def send_to_connection(self, connection_id: str, envelope: EnvelopeLike) -> bool:
        """Send to one connection, on whichever node holds it.

        Returns ``False`` if it is gone or was just closed as slow (known here), or its
        node is not listening; ``True`` once queued here or handed to its node.

        Raises:
            BackplaneError: the connection lives on another node that cannot be reached.
        """
        return await self.__delivery.send_to_connection(connection_id, envelope)

    async def reply(
        self,
        connection_id: str,
        request: EnvelopeLike,
        data: Any = None,
        *,
        message_type: str = ACK,
    ) -> bool:
        """Answer ``request`` on one connection (on any node), keeping its ``request_id``:
        ``{"type": message_type, "data": data, "request_id": <the request's>}``.

        ``data`` may be a pydantic model. Queued in order with every other delivery;
        returns what `send_to_connection()` returns.

        Raises:
            BackplaneError: the connection lives on another node that cannot be reached.
        """
        return await self.send_to_connection(
            connection_id, reply_envelope(request, data, message_type=message_type)
        )

    async def reply_error(
        self, connection_id: str, request: EnvelopeLike, code: str, message: str
    ) -> bool:
        """Answer ``request`` with ``{"type": "error", "data": {"code", "message"},
        "request_id": <the request's>}`` (as the router answers a malformed frame).

        Raises:
            BackplaneError: the connection lives on another node that cannot be reached.
        """
        return await self.send_to_connection(connection_id, error_reply(request, code, message))

    async def disconnect_user(
        self, user_id: UserId, code: int = CloseCode.UNAUTHORIZED, reason: str = "revoked"
    ) -> int:
        """Close every connection of ``user_id`` on every node with ``code``.

        Returns how many were closed in this process. The default 4401 tells clients to
        fetch a new token, which a revoked user cannot.

        Raises:
            BackplaneError: the other nodes may not get the order (local ones are closed).
        """
        return await self.__delivery.disconnect_user(str(user_id), code, reason)

    # -- topics -------------------------------------------------------------------

    @property
    def topic_authorizer(self) -> TopicAuthorizer | None:
        """The ``topic_authorizer`` (see the class docstring); a router given one sets it."""
        return self.__membership.gate.authorizer

    @topic_authorizer.setter
    def topic_authorizer(self, authorizer: TopicAuthorizer | None) -> None:
        self.__membership.gate.authorizer = authorizer

    @property
    def require_topic(self) -> bool:
        """Whether `broadcast()` needs a topic or ``everyone=True`` (see the class docstring)."""
        return self.__delivery.require_topic

    @require_topic.setter
    def require_topic(self, required: bool) -> None:
        self.__delivery.require_topic = required

    def check_authorizer(self) -> None:
        """Refuse now what `start()` would refuse (the router calls it when built).

        Raises:
            ConfigurationError: the hub keeps presence or history but has no
                ``topic_authorizer`` (topics are closed by default).
        """
        self.__membership.check_authorizer()

    async def authorize(self, connection: WebSocketConnection, topic: Topic) -> bool:
        """Whether the ``topic_authorizer`` admits ``connection`` to ``topic`` now, asked
        as for a new subscription: only a verdict of exactly ``True`` within
        ``authorizer_timeout`` admits; a denial is logged as a ``topic_denied`` security
        event. ``True`` on a hub without an authorizer."""
        return await self.__membership.gate.admits(connection, topic)

    async def subscribe(
        self,
        connection_id: str,
        topic: Topic,
        *,
        position: Position | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Subscribe a connection to ``topic``; ``False`` if the connection is gone or the
        hub's ``topic_authorizer`` denied it (a ``topic_denied`` security event is logged
        and nothing is subscribed). Idempotent: an existing subscription returns ``True``
        without asking the authorizer again.

        The first subscriber of a topic in this process subscribes the node to the
        topic's channel (and waits for the backplane to confirm it, unless the backplane
        is down: then it is subscribed on reconnection). With presence kept for the
        topic, a user's first subscription anywhere sends ``presence.join`` to the other
        members before this returns.

        On a topic that keeps history (``history_policy``), the connection also gets,
        before this returns: the messages published after ``position`` (the last one
        the client got, from [`requested_position()`][tempest_ws.history.requested_position]), each
        stamped with its position, then one ``recovery`` envelope carrying
        ``request_id`` (``recovered: true`` when nothing is missing; ``false`` when the
        client must reload, always so without a ``position``), then the live messages,
        with no gap and no duplicate at the seam. That holds for a connection already
        subscribed too: it gets the replay from ``position`` again. Elsewhere
        ``position`` and ``request_id`` are ignored. See ``docs/history.md``.

        Raises:
            ValueError: ``topic`` is empty or longer than 256 characters.
            TopicLimitError: the connection is already subscribed to
                ``max_topics_per_connection`` topics (``WS_MAX_TOPICS_PER_CONNECTION``);
                nothing is subscribed, the authorizer is not asked, the connection
                stays open with its other topics.
        """
        return await self.__membership.join(connection_id, topic, position, request_id, None)

    async def subscribe_with_ack(
        self,
        connection_id: str,
        topic: Topic,
        ack: EnvelopeLike,
        *,
        position: Position | None = None,
        request_id: str | None = None,
    ) -> bool:
        """`subscribe()`, queuing ``ack`` to the connection once it is subscribed, before
        any replay: a handler's own subscribe operation can answer as the built-in
        ``subscribe`` does (its ack arrives before the replayed messages). Nothing is
        sent when it returns ``False``.

        Raises:
            ValueError: ``topic`` is empty or longer than 256 characters.
            TopicLimitError: as for `subscribe()`.
            EnvelopeError: ``ack`` is a mapping without a ``type``.
        """
        frame = encode_envelope(ack)
        return await self.__membership.join(connection_id, topic, position, request_id, frame)

    async def unsubscribe(self, connection_id: str, topic: Topic) -> bool:
        """Remove a subscription; ``False`` if it did not exist. With presence kept for
        the topic, the user's last subscription anywhere sends ``presence.leave``
        (without waiting for it)."""
        return self.__membership.leave(connection_id, topic)

    def subscribers(self, topic: Topic) -> list[WebSocketConnection]:
        """Connections subscribed to ``topic`` in this process."""
        return self.__membership.subscribers(topic)

    # -- presence -----------------------------------------------------------------

    async def online_users(self) -> set[str]:
        """Ids (as ``str``) of users with at least one live connection on any node.

        Raises:
            BackplaneError: the presence registry is unreachable (Redis down).
        """
        return await self.__membership.online_users()

    async def is_online(self, user_id: UserId) -> bool:
        """Whether the user has at least one live connection on any node.

        Raises:
            BackplaneError: the user has no connection here and the presence registry is
                unreachable.
        """
        return await self.__membership.is_online(str(user_id))

    async def presence(self, topic: Topic) -> set[str]:
        """Ids (as ``str``) of the users with a connection subscribed to ``topic`` on
        any live node. Several tabs count once; a dead node's users drop out once its
        presence expires (``WS_REDIS_PRESENCE_TTL_SECONDS``).

        Raises:
            ConfigurationError: the hub keeps no presence for ``topic`` (``presence=``).
            BackplaneError: the presence registry is unreachable (Redis down).
        """
        return await self.__membership.topic_members(topic)

    def keeps_presence(self, topic: Topic) -> bool:
        """Whether this hub keeps presence for ``topic`` (see ``presence=``)."""
        return self.__membership.keeps_presence(topic)

    @property
    def presence_enabled(self) -> bool:
        """Whether this hub keeps presence for any topic (``presence=`` is not ``False``)."""
        return self.__membership.presence_enabled

    # -- history ------------------------------------------------------------------

    def keeps_history(self, topic: Topic) -> bool:
        """Whether ``topic``'s messages get offsets and can be replayed."""
        return self.__history is not None and self.__history.keeps(topic)

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
        if self.__history is None:
            raise ValueError("this hub keeps no history")
        return await self.__history.page(topic, since=since, limit=limit)

    def history_stats(self) -> HistoryStats:
        """What the message history did in this process, as plain numbers (no I/O):
        appends, replays, gaps filled or given up, notices, stale drops, seam overflows
        and the topics followed now. All zero on a hub that keeps no history.
        [`WebSocketMetrics`][tempest_ws.observe.metrics.WebSocketMetrics] exports them."""
        return _NO_HISTORY if self.__history is None else self.__history.stats()
