"""docs/realtime.md: presence for some topics, and the lifecycle hooks."""

from __future__ import annotations

from fastapi import WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketRouter,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)


def may_join(connection: WebSocketConnection, topic: str) -> bool:
    """Your own inbox, rooms and chats (a real app asks its membership store)."""
    return topic == f"inbox:{connection.user_key}" or topic.startswith(("room:", "chat:"))


def presence_hub(settings: WebSocketSettings) -> WebSocketHub:
    """A hub that keeps presence for the ``room:*`` topics only."""
    # --8<-- [start:presence]
    hub = WebSocketHub.from_settings(
        settings,
        presence=lambda topic: topic.startswith("room:"),
        topic_authorizer=may_join,  # required with presence: who may see a room's members
    )
    # --8<-- [end:presence]
    return hub


def router_with_hooks(
    settings: WebSocketSettings, hub: WebSocketHub, events: list[str]
) -> WebSocketRouter:
    """A router whose hooks record into ``events``; users named ``banned`` are refused."""
    resolver = jwt_bearer_resolver(settings)

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        while True:
            await ws.receive_json()

    def on_connect(connection: WebSocketConnection, ws: WebSocket) -> bool:
        events.append(f"connect {connection.user_key}")
        return connection.user_key != "banned"  # False closes 4403

    async def audit(connection: WebSocketConnection) -> None:
        events.append(f"audit {connection.user_key}")

    def release_locks(connection: WebSocketConnection) -> None:
        events.append(f"release {connection.user_key}")

    # --8<-- [start:hooks]
    router = make_websocket_router(
        handler, hub=hub, bearer_resolver=resolver, settings=settings,
        on_connect=on_connect,                   # may refuse
        on_disconnect=[audit, release_locks],    # run in order, each one always
    )
    # --8<-- [end:hooks]
    return router
