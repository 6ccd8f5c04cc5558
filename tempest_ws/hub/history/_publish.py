"""Publishing on a history topic: append, stamp, deliver here, publish with the position.

A part of [`HubHistory`][tempest_ws.hub.history._history.HubHistory] (its base class), kept apart
because it is one job. The store gives the message its offset; the frame is stamped
with it, released here through the topic's sequencer, and published to the other nodes
with the position in the packet header.

When the store offers an `AppendPublish` for the node's
backplane (``RedisHistory`` and ``RedisBackplane`` on one standalone server), the append
and the publish are one script: one round trip, and the channel carries the topic's
messages in offset order. Otherwise the append is awaited first, then the packet is
published (and not even built when no other node listens, as on a lone in-memory hub).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tempest_ws.backplane.packet import OP_TOPIC, encode_packet, positioned_head, topic_channel
from tempest_ws.exceptions import BackplaneError
from tempest_ws.history.base import AppendPublish, HistoryStore, Position
from tempest_ws.history.wire import stamp_frame
from tempest_ws.hub._node import Node
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._topic import TopicState
from tempest_ws.observe._audit import traffic_event

__all__ = ["Publishing"]


class Publishing:
    """The publishing path (a base of ``HubHistory``)."""

    store: HistoryStore
    registry: Registry
    node: Node
    append_publish: AppendPublish | None
    appended: int
    append_failures: int
    _topics: dict[str, TopicState]

    if TYPE_CHECKING:

        def _arrive(
            self,
            topic: str,
            position: Position,
            frame: str,
            exclude: frozenset[str],
            exclude_users: frozenset[str],
        ) -> int: ...

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
        node = self.node
        channel = topic_channel(topic)
        joint = self.append_publish
        try:
            if joint is not None:
                head = positioned_head(
                    node.node_id,
                    OP_TOPIC,
                    topic,
                    exclude=exclude,
                    exclude_users=exclude_users,
                    trace=trace,
                )
                position = await joint(topic, frame, channel, head)
            else:
                position = await self.store.append(topic, frame)
        except BackplaneError:
            self.append_failures += 1
            recipients = self.registry.select(OP_TOPIC, topic, exclude, exclude_users)
            self.registry.fan_out(recipients, frame)
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
        state = self._topics.get(topic)
        stamped = (
            stamp_frame(frame, topic, position) if state is None else state.stamp(frame, position)
        )
        delivered = self._arrive(topic, position, stamped, exclude, exclude_users)
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
