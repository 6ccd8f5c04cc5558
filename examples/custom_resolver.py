"""A bearer resolver that looks opaque tokens up in a store instead of verifying a JWT.

Any ``async (token) -> user id | None`` is a resolver. This one plays the part of a
sessions table: tokens are random strings handed out at login, the store keeps only
their SHA-256 digest (a leaked table does not leak live tokens) with the user and an
expiry, and logging out deletes the row *and* closes the user's open sockets with 4401.
``POST /login`` hands a token out only for a user id and password that match the users
table (a salted PBKDF2 hash per user, compared in constant time).

Tokens come from `secrets.token_urlsafe()`, whose alphabet (letters, digits, ``-``
and ``_``) is valid in the ``Sec-WebSocket-Protocol`` header, so browsers can send them
with ``new WebSocket(url, ["bearer", token])``.

Run it::

    python -m examples.custom_resolver
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, WebSocket
from pydantic import BaseModel, Field

from tempest_ws import (
    CloseCode,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    WSEnvelope,
    make_websocket_router,
)

logger = logging.getLogger(__name__)


# --8<-- [start:store]
def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """One row of the sessions table."""

    user_id: str
    expires_at: float


class TokenStore:
    """A DB-like sessions table keyed by the token's digest (a dict stands in for the DB)."""

    def __init__(self, *, ttl_seconds: float = 3600.0) -> None:
        self._rows: dict[str, Session] = {}
        self._ttl = ttl_seconds

    async def issue(self, user_id: str) -> str:
        """Create a session for ``user_id`` and return its token (shown to the client once)."""
        token = secrets.token_urlsafe(32)
        self._rows[_digest(token)] = Session(user_id, time.time() + self._ttl)
        return token

    async def lookup(self, token: str) -> Session | None:
        """The live session for ``token``, or ``None`` (unknown, revoked or expired)."""
        row = self._rows.get(_digest(token))
        if row is None or row.expires_at <= time.time():
            return None
        return row

    async def revoke(self, token: str) -> Session | None:
        """Delete the session; return it, or ``None`` if there was none."""
        return self._rows.pop(_digest(token), None)


def store_resolver(store: TokenStore) -> Callable[[str], Awaitable[str | None]]:
    """A ``bearer_resolver`` backed by ``store``: the user id, or ``None`` to close 4401."""

    async def resolve(token: str) -> str | None:
        # An exception here (the DB is down) also closes 4401: the router logs it and
        # never lets it escape. Return None for "no such user" rather than raising.
        session = await store.lookup(token)
        return session.user_id if session is not None else None

    return resolve


# --8<-- [end:store]


def _password_hash(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 600_000)


class Users:
    """A DB-like users table: user id -> (salt, PBKDF2 hash of the password)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[bytes, bytes]] = {}
        self._decoy = (b"\0" * 16, _password_hash("", b"\0" * 16))

    def add(self, user_id: str, password: str) -> None:
        """Create or replace ``user_id`` with ``password`` (only its hash is kept)."""
        salt = os.urandom(16)
        self._rows[user_id] = (salt, _password_hash(password, salt))

    async def check(self, user_id: str, password: str) -> bool:
        """Whether ``password`` is ``user_id``'s; as slow for an unknown user as a known one."""
        salt, expected = self._rows.get(user_id, self._decoy)
        # PBKDF2 takes a while on purpose: off the event loop, so sockets keep flowing.
        given = await asyncio.to_thread(_password_hash, password, salt)
        return hmac.compare_digest(given, expected) and user_id in self._rows


class Login(BaseModel):
    """The login form."""

    user_id: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Answer ``whoami`` with the user the resolver returned."""
    while True:
        envelope = WSEnvelope.model_validate(await ws.receive_json())
        if envelope.type == "whoami":
            await connection.send(
                WSEnvelope(
                    type="whoami",
                    data={"user_id": connection.user_key},
                    request_id=envelope.request_id,
                )
            )


# --8<-- [start:app]
def create_app(
    settings: WebSocketSettings, store: TokenStore | None = None, users: Users | None = None
) -> FastAPI:
    """``/ws`` authenticated by ``store``; ``POST /login`` (checked against ``users``)
    and ``POST /logout`` manage it."""
    store = store or TokenStore()
    users = users or Users()
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.state.store = store
    app.state.hub = hub
    app.include_router(
        make_websocket_router(
            handler, hub=hub, bearer_resolver=store_resolver(store), settings=settings
        )
    )

    @app.post("/login")
    async def login(form: Login) -> dict[str, str]:
        """Issue a session token for a user whose password matches; else 401."""
        if not await users.check(form.user_id, form.password):
            raise HTTPException(status_code=401, detail="unknown user or wrong password")
        return {"token": await store.issue(form.user_id)}

    # --8<-- [start:logout]
    @app.post("/logout")
    async def logout(authorization: Annotated[str, Header()]) -> dict[str, int]:
        """Revoke the bearer token and close the user's sockets with 4401.

        The hub knows users, not tokens, so every socket of the user closes; clients
        holding another valid token reconnect with it.
        """
        scheme, _, token = authorization.partition(" ")
        session = await store.revoke(token) if scheme.lower() == "bearer" else None
        if session is None:
            raise HTTPException(status_code=401, detail="unknown token")
        closed = await hub.disconnect_user(session.user_id, CloseCode.UNAUTHORIZED, "logged out")
        logger.info("user %s logged out; %d socket(s) closed", session.user_id, closed)
        return {"closed": closed}
        # --8<-- [end:logout]

    return app


# --8<-- [end:app]


if __name__ == "__main__":
    from tempest_ws.server import run

    logging.basicConfig(level=logging.INFO)
    settings = WebSocketSettings()
    logger.info("serving the custom resolver example on http://127.0.0.1:8000")
    run(create_app(settings), settings=settings)
