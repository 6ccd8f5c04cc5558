"""Tokens for tests: a JWT signed with a test secret, and opaque tokens without one.

`make_token()` signs a JWT the
[`jwt_bearer_resolver()`][tempest_ws.router.auth.jwt_bearer_resolver] accepts;
`FakeTokens` is a token/resolver pair without cryptography.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import jwt

from tempest_ws._types import UserId

__all__ = ["FakeTokens", "make_token"]


def make_token(
    subject: str,
    *,
    secret: str,
    algorithm: str = "HS256",
    expires_in: float = 300.0,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """Sign a JWT with ``sub`` and ``exp`` (``expires_in`` seconds from now, may be negative)."""
    payload: dict[str, Any] = {"sub": subject, "exp": int(time.time() + expires_in)}
    payload.update(claims or {})
    return jwt.encode(payload, secret, algorithm=algorithm)


class FakeTokens:
    """A token/resolver pair for tests: opaque random tokens, no secret, no JWT.

    ``tokens.issue("alice")`` returns a token; give ``tokens.resolver`` to
    ``make_websocket_router(bearer_resolver=...)``. Unknown and revoked tokens resolve to
    ``None``, which the router closes 4401. To test the real JWT path instead, sign with
    `make_token()` and your test secret.
    """

    def __init__(self) -> None:
        self._users: dict[str, UserId] = {}

    def issue(self, user_id: UserId) -> str:
        """A new token that resolves to ``user_id`` (valid in a subprotocol header)."""
        token = "test-" + secrets.token_urlsafe(18)
        self._users[token] = user_id
        return token

    def revoke(self, token: str) -> None:
        """Make ``token`` resolve to ``None`` from now on (connections stay open)."""
        self._users.pop(token, None)

    async def resolver(self, token: str) -> UserId | None:
        """The bearer resolver: the user the token was issued for, or ``None``."""
        return self._users.get(token)
