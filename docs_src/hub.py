"""docs/hub.md: building a hub, delivering, replying and authorizing topics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket

from tempest_ws import (
    BackplaneError,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    WSEnvelope,
)
from tempest_ws.realtime import receive_envelope

log = logging.getLogger("docs_src.hub")


def build_hubs(settings: WebSocketSettings) -> tuple[WebSocketHub, WebSocketHub]:
    """The two ways to build a hub: from settings, or with keyword arguments."""
    # --8<-- [start:build]
    hub = WebSocketHub.from_settings(settings)        # every hub setting from WS_*
    explicit = WebSocketHub(max_per_user=5)           # or explicit keyword arguments
    # --8<-- [end:build]
    return hub, explicit


async def post_to_room(hub: WebSocketHub, envelope: WSEnvelope, room: str) -> None:
    """A broadcast whose cross-process copy may fail."""
    # --8<-- [start:backplane_error]
    try:
        await hub.broadcast(envelope, topic=room)
    except BackplaneError:
        log.warning("room %s: other processes missed this message", room)
    # --8<-- [end:backplane_error]


async def notify(hub: WebSocketHub, user_id: str) -> None:
    """The same notification twice: as a ``WSEnvelope`` and as a plain mapping."""
    # --8<-- [start:envelopes]
    await hub.send_to(user_id, WSEnvelope(type="notification", data={"text": "hi"}))
    await hub.send_to(user_id, {"type": "notification", "data": {"text": "hi"}})
    # --8<-- [end:envelopes]


async def broadcasts(
    hub: WebSocketHub,
    connection: WebSocketConnection,
    message: dict[str, Any],
    oid: int,
    blocked_user_id: str,
) -> None:
    """The four broadcasts of the page, in its order."""
    # --8<-- [start:broadcast]
    await hub.broadcast({"type": "system.announcement", "data": {"text": "maintenance"}}, everyone=True)
    await hub.broadcast(WSEnvelope(type="order.paid", data={"id": oid}), topic=f"order:{oid}")
    await hub.broadcast(message, topic="chat:lobby", exclude=connection.connection_id)
    await hub.broadcast(message, topic="chat:lobby", exclude_users=[blocked_user_id])
    # --8<-- [end:broadcast]


@dataclass
class Order:
    """What ``place_order`` returns."""

    id: int


async def place_order(data: Any) -> Order:
    """Stands for your business logic."""
    return Order(id=len(str(data)))


async def order_handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Answers every request with the order id, keeping its ``request_id``."""
    while True:
        # --8<-- [start:reply]
        incoming = await receive_envelope(ws)                     # tempest_ws.realtime
        order = await place_order(incoming.envelope.data)
        await hub.reply(connection.connection_id, incoming.envelope, {"id": order.id})
        # --8<-- [end:reply]


def tenant_hub(settings: WebSocketSettings) -> WebSocketHub:
    """A hub whose topics are scoped to the connection's tenant."""
    # --8<-- [start:tenant]
    def tenant_topics(connection: WebSocketConnection, topic: str) -> bool:
        tenant = connection.metadata.get("tenant")           # set by your on_connect hook
        return tenant is not None and topic.startswith(f"tenant:{tenant}:")

    hub = WebSocketHub.from_settings(settings, topic_authorizer=tenant_topics, require_topic=True)
    # --8<-- [end:tenant]
    return hub
