"""A server that speaks the history protocol on demand, for the client's edge cases.

`HistoryProtocol` is a handler for the real router (``make_websocket_router``:
real ``hello``, heartbeats and bearer auth) that answers the way ``docs/history.md``
("On the wire") says the hub does. It uses the real ``tempest_ws.history`` code:
``MemoryHistory`` keeps the frames, ``stamp_frame`` stamps them, ``requested_position``
reads a resuming ``subscribe`` and ``recovery_envelope`` writes the answer. The client
is tested against the real hub in ``tests/redis/test_history_client_e2e.py``; this fake stays
for what the hub does not do on request: malformed positions (``raw``), a notice at
once (``notice``), the ``ack`` after the ``recovery`` (``ack_first=False``), an ack
proving a stamped message reached the client (``publish`` with a ``request_id``).

Operations (``data`` fields in braces):

- ``subscribe`` {topic[, offset, epoch]}: the ``ack`` and, for the topic, the missed
  messages (stamped), then one ``recovery``; then live messages. ``ack_first`` decides
  whether the ``ack`` comes before the replay or after the ``recovery``.
- ``unsubscribe`` {topic}.
- ``publish`` {topic, payload}: appends a ``published`` message and sends it, stamped,
  to the topic's subscribers; with a ``request_id`` the sender gets an ``ack`` carrying
  the position.
- ``notice`` {topic}: an unrequested ``recovery`` with ``recovered: false`` at the
  topic's latest position to its subscribers (the hub's discontinuity notice).
- ``raw`` {frame}: the frame back to the sender, verbatim (malformed input tests).
- ``sync``: an ``ack`` with the ``request_id``; its arrival proves that everything queued
  for the sender before it arrived too.
- ``abort``: drops the sender's TCP connection without a close frame.
- ``forget``: drops every topic's history, so every epoch changes (as after a restart).

Run as ``python -m tests.helpers.history_protocol_app --port N`` it serves the app under
uvicorn for ``tests.helpers.server_process.ServerProcess(module=...)``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from fastapi import FastAPI, WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    encode_envelope,
)
from tempest_ws.history import (
    HistoryPolicy,
    MemoryHistory,
    Position,
    Recovery,
    recovery_envelope,
    requested_position,
    stamp_frame,
)
from tests.helpers.server_process import serve_forever
from tests.helpers.support import build_app


def _ack(operation: str, request_id: Any, **fields: Any) -> str:
    data = {"type": operation, **fields}
    return encode_envelope({"type": "ack", "data": data, "request_id": request_id})


class HistoryProtocol:
    """The history side of the server: one ``MemoryHistory``, who is subscribed to what.

    ``subscribes`` records the ``data`` of every ``subscribe`` received, for assertions.
    ``MemoryHistory`` never suspends, so the read of a replay and the registration for
    live messages happen with nothing published in between: no gap, no duplicate.
    """

    def __init__(self, *, ack_first: bool = True, policy: HistoryPolicy | None = None) -> None:
        self.ack_first = ack_first
        self.policy = policy or HistoryPolicy(topics=("*",))
        self.store = MemoryHistory(self.policy)
        self.members: dict[WebSocketConnection, set[str]] = {}
        self.subscribes: list[dict[str, Any]] = []

    async def handler(
        self, ws: WebSocket, connection: WebSocketConnection, _: WebSocketHub
    ) -> None:
        """The router's handler: one loop per connection."""
        self.members[connection] = set()
        try:
            while True:  # ends with the connection (WebSocketDisconnect)
                message = await ws.receive_json()
                data = message.get("data") or {}
                await self._on(connection, message["type"], data, message.get("request_id"))
        finally:
            self.members.pop(connection, None)

    async def _on(
        self, connection: WebSocketConnection, kind: str, data: dict[str, Any], request_id: Any
    ) -> None:
        if kind == "subscribe":
            await self._subscribe(connection, data, request_id)
        elif kind == "unsubscribe":
            self.members.get(connection, set()).discard(data["topic"])
        elif kind == "publish":
            position = await self.publish(data["topic"], data.get("payload"))
            if request_id is not None:
                connection.enqueue(_ack("publish", request_id, position=list(position)))
        elif kind == "notice":
            topic = data["topic"]
            gap = Recovery((), False, await self.store.latest(topic))
            self._fan_out(topic, recovery_envelope(topic, gap, replayed=0))
        elif kind == "raw":
            connection.enqueue(data["frame"])
        elif kind == "sync":
            connection.enqueue(_ack("sync", request_id))
        elif kind == "abort":
            self.members.pop(connection, None)
            connection.abort()
        elif kind == "forget":
            self.store = MemoryHistory(self.policy)

    async def _subscribe(
        self, connection: WebSocketConnection, data: dict[str, Any], request_id: Any
    ) -> None:
        self.subscribes.append(dict(data))
        topic = data["topic"]
        try:
            position = requested_position(data)
        except ValueError:
            error = {"code": "invalid_position", "message": "malformed offset/epoch"}
            connection.enqueue(encode_envelope({"type": "error", "data": error}))
            return
        if position is None:
            recovery = Recovery((), False, await self.store.latest(topic))
        else:
            limit = self.policy.recovery_limit
            recovery = await self.store.since(topic, *position, limit=limit)
        epoch = recovery.position.epoch
        frames = [stamp_frame(e.frame, topic, Position(e.offset, epoch)) for e in recovery.entries]
        frames.append(
            recovery_envelope(topic, recovery, replayed=len(frames), request_id=request_id)
        )
        ack = _ack("subscribe", request_id, topic=topic)
        for frame in [ack, *frames] if self.ack_first else [*frames, ack]:
            connection.enqueue(frame)
        self.members.setdefault(connection, set()).add(topic)

    async def publish(self, topic: str, payload: Any) -> Position:
        """Append a ``published`` message to ``topic`` and send it stamped to subscribers."""
        frame = encode_envelope({"type": "published", "data": payload})
        position = await self.store.append(topic, frame)
        self._fan_out(topic, stamp_frame(frame, topic, position))
        return position

    def _fan_out(self, topic: str, frame: str) -> None:
        for member, topics in list(self.members.items()):
            if topic in topics:
                member.enqueue(frame)


def build_history_app(
    settings: WebSocketSettings, protocol: HistoryProtocol | None = None
) -> tuple[FastAPI, HistoryProtocol]:
    """The router at ``/ws`` with ``protocol``'s handler (a new one by default)."""
    protocol = protocol or HistoryProtocol()
    app, _ = build_app(settings, handler=protocol.handler)
    return app, protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    asyncio.run(serve_forever(port, lambda settings: build_history_app(settings)[0]))


if __name__ == "__main__":
    main()
