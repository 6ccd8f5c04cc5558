"""Type aliases shared across tempest_ws."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from tempest_ws.hub._connection import WebSocketConnection
    from tempest_ws.hub._hub import WebSocketHub

UserId: TypeAlias = UUID | str
"""What a bearer resolver returns: the user's id. The hub keys users by ``str(user_id)``."""

Topic: TypeAlias = str

BearerResolver: TypeAlias = Callable[[str], Awaitable[UserId | None]]
"""``async (token) -> user id | None``; ``None`` (or an exception) closes 4401."""

Handler: TypeAlias = Callable[["WebSocket", "WebSocketConnection", "WebSocketHub"], Awaitable[None]]
"""``async (ws, connection, hub) -> None``, awaited once per authenticated connection."""

Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
Scope: TypeAlias = MutableMapping[str, Any]
