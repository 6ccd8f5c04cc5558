"""Type aliases shared across tempest_ws."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias
from uuid import UUID

UserId: TypeAlias = UUID | str
"""What a bearer resolver returns: the user's id. The hub keys users by ``str(user_id)``."""

Topic: TypeAlias = str

BearerResolver: TypeAlias = Callable[[str], Awaitable[UserId | None]]
"""``async (token) -> user id | None``; ``None`` (or an exception) closes 4401."""

Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
Scope: TypeAlias = MutableMapping[str, Any]
