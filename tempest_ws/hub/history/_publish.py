"""Publishing on a history topic: append, stamp, deliver here, publish with the position.

A collaborator of [`HubHistory`][tempest_ws.hub.history._history.HubHistory]. The store
gives the message its offset; the frame is stamped
with it, released here through the topic's sequencer, and published to the other nodes
with the position in the packet header.

When the store offers an `AppendPublish` for the node's
backplane (``RedisHistory`` and ``RedisBackplane`` on one standalone server), the append
and the publish are one script: one round trip, and the channel carries the topic's
messages in offset order. Otherwise the append is awaited first, then the packet is
published (and not even built when no other node listens, as on a lone in-memory hub).
A store whose appends await nothing (``MemoryHistory.append_now``) is called without a
coroutine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

from tempest_ws.backplane.packet import OP_TOPIC, encode_packet, positioned_head, topic_channel
from tempest_ws.exceptions import BackplaneError
from tempest_ws.history.base import AppendPublish, HistoryStore, Position
from tempest_ws.history.wire import stamp_frame
from tempest_ws.hub._node import Node
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._sequence import Sequencing
from tempest_ws.hub.history._topic import TopicState
from tempest_ws.observe._audit import traffic_event

__all__ = ["Publisher"]


class Publisher:
    """The publishing path of one hub's history.

    Args:
        store: where messages are appended.
        registry: the hub's local connections (an append that fails delivers unstamped).
        node: the hub's backplane side (publishing to the other nodes).
        sequencing: what delivers a stamped message here, in offset order.
        topics: the followed topics by name (a followed topic stamps with its stamper).
        append_publish: the store's one-round-trip append and publish, if it offers one.
        append_now: the store's append without a coroutine, if it offers one.
    """

    def __init__(
        self,
        store: HistoryStore,
        registry: Registry,
        node: Node,
        sequencing: Sequencing,
        topics: dict[str, TopicState],
        append_publish: AppendPublish | None = None,
        append_now: Callable[[str, str], Position] | None = None,
    ) -> None:
        self.store = store
        self.append_publish = append_publish
        self.append_now = append_now
        self.appended = 0
        self.append_failures = 0
        self._registry = registry
        self._node = node
        self._sequencing = sequencing
        self._topics = topics

    def broadcast_now(
        self, topic: str, frame: str, exclude: frozenset[str], exclude_users: frozenset[str]
    ) -> int | None:
        """`broadcast()` without a coroutine, when nothing in it would wait: the store
        appends without awaiting (``append_now``) and no other node listens to the
        topic's channel (no packet to publish, as on a lone in-memory hub). Returns
        ``None``, having done nothing, otherwise."""
        append_now = self.append_now
        if append_now is None:
            return None
        state = self._topics.get(topic)  # append_now() runs no callback: it stays
        if self._node.reaches_others(topic_channel(topic) if state is None else state.channel):
            return None
        position = append_now(topic, frame)
        self.appended += 1
        return self._arrive(topic, state, frame, position, exclude, exclude_users)[1]

    async def broadcast(
        self,
        topic: str,
        frame: str,
        exclude: frozenset[str],
        exclude_users: frozenset[str],
        trace: Mapping[str, str] | None = None,
    ) -> int:
        """Append, stamp, deliver here in offset order, publish with the position (and
        the caller's trace context, when tracing is on).

        When the append fails, the unstamped frame is delivered and published as on a
        topic without history, then the append's `BackplaneError` is raised.
        """
        node = self._node
        channel = topic_channel(topic)
        joint = self.append_publish
        try:
            if joint is not None:
                state = self._topics.get(topic)
                if exclude or exclude_users or trace or state is None:
                    head = positioned_head(
                        node.node_id,
                        OP_TOPIC,
                        topic,
                        exclude=exclude,
                        exclude_users=exclude_users,
                        trace=trace,
                    )
                else:  # a followed topic keeps its plain header
                    head = state.head
                    if not head:
                        head = state.head = positioned_head(node.node_id, OP_TOPIC, topic)
                position = await joint(topic, frame, channel, head)
            elif self.append_now is not None:
                position = self.append_now(topic, frame)
            else:
                position = await self.store.append(topic, frame)
        except BackplaneError:
            self.append_failures += 1
            recipients = self._registry.select(OP_TOPIC, topic, exclude, exclude_users)
            self._registry.fan_out(recipients, frame)
            packet = encode_packet(
                node.node_id,
                OP_TOPIC,
                topic,
                frame,
                exclude=exclude,
                exclude_users=exclude_users,
                trace=trace,
            )
            with contextlib.suppress(BackplaneError):
                await node.publish(channel, packet)
            raise
        self.appended += 1
        state = self._topics.get(topic)  # looked up again: it may have changed meanwhile
        stamped, delivered = self._arrive(topic, state, frame, position, exclude, exclude_users)
        if joint is not None:
            traffic_event("backplane_published")
        elif node.reaches_others(channel):
            packet = encode_packet(
                node.node_id,
                OP_TOPIC,
                topic,
                stamped,
                exclude=exclude,
                exclude_users=exclude_users,
                position=position,
                trace=trace,
            )
            await node.publish(channel, packet)
        return delivered

    def _arrive(
        self,
        topic: str,
        state: TopicState | None,
        frame: str,
        position: Position,
        exclude: frozenset[str],
        exclude_users: frozenset[str],
    ) -> tuple[str, int]:
        """Stamp ``frame`` with ``position`` and deliver it here in offset order (through
        the topic's sequencer when this node follows it, ``state``); return the stamped
        frame and how many local connections got it now."""
        if state is None:
            stamped = stamp_frame(frame, topic, position)
            return stamped, self._sequencing.arrive(
                topic, position, stamped, exclude, exclude_users
            )
        stamped = state.stamp.compact(frame, position)  # the hub's frames are compact
        return stamped, self._sequencing.arrive_at(state, position, stamped, exclude, exclude_users)
