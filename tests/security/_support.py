"""Small helpers shared by the security suite (the raw client lives in tests/_hardening)."""

from __future__ import annotations

import base64
import json
from typing import Any
from uuid import UUID, uuid4

from websockets.asyncio.client import connect

from tests.helpers.hardening import until_closed
from tests.helpers.support import token


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWT segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_jwt(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT with exactly this header, these claims and this signature."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signature)}"


def bearer(user: UUID | None = None, **kwargs: Any) -> list[Any]:
    """The ``bearer`` subprotocol with a valid token for ``user`` (a fresh UUID)."""
    return ["bearer", token(str(user or uuid4()), **kwargs)]


async def close_of(url: str, **kwargs: Any) -> tuple[int, str]:
    """Connect, read until the server closes, return its close code and reason."""
    async with connect(url, **kwargs) as ws:
        _, code, reason = await until_closed(ws)
    return code, reason
