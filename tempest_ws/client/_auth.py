"""The client's token: how it travels in the handshake and how it is refreshed in band.

`place_token()` puts a token where the server looks for it (the ``bearer``
subprotocol, the ``Authorization`` header or the ``?token=`` query). The rest keeps a
connection alive past its token's ``exp`` without reconnecting: `unverified_expiry()`
reads the ``exp`` claim of a JWT without verifying it (the client cannot, and need not:
it only schedules a refresh), `refresh_time()` says when to refresh, and
`refresh_in_band()` is the per-connection loop that asks the token provider for a
fresh token and sends it as ``auth.refresh`` on the open connection. A token that is not
a JWT, or has no numeric ``exp`` (a number, or a string of digits as PyJWT and the
server accept), is never refreshed in band (the server never expires it either).
`TokenKeeper` is the part of [`WebSocketClient`][tempest_ws.client.WebSocketClient] that
applies these to its connections. Logs never contain a token. Requires the ``client``
extra (websockets).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tempest_ws.client._dial import Handshake
from tempest_ws.client._options import TokenProvider
from tempest_ws.client._pending import PendingRequests
from tempest_ws.client._session import Session
from tempest_ws.exceptions import (
    ConfigurationError,
    ConnectionClosedError,
    MissingDependencyError,
    RequestTimeoutError,
)
from tempest_ws.wire._subprotocol import BEARER_SUBPROTOCOL
from tempest_ws.wire.envelope import ACK, AUTH_REFRESH, WSEnvelope, encode_envelope

try:
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - exercised when the extra is absent
    raise MissingDependencyError("websockets", "client") from None

__all__ = [
    "AuthMode",
    "TokenGrant",
    "TokenKeeper",
    "place_token",
    "refresh_in_band",
    "refresh_time",
    "unverified_expiry",
]

logger = logging.getLogger("tempest_ws.client")

AuthMode = Literal["subprotocol", "header", "query"]
_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 7230 token: subprotocol-safe
_MAX_RETRY = 5.0
_MIN_RETRY = 0.5


def place_token(
    token: str, mode: AuthMode, url: str, protocols: list[str], headers: dict[str, str]
) -> tuple[str, list[str], dict[str, str]]:
    """Return the handshake's ``(url, subprotocols, headers)`` carrying ``token``.

    Raises:
        ConfigurationError: an empty or non-``str`` token, or (``"subprotocol"``) one
            with characters a subprotocol cannot carry.
    """
    if not isinstance(token, str) or not token:
        raise ConfigurationError("the token provider must return a non-empty str")
    if mode == "subprotocol":
        if not _TOKEN_CHARS.fullmatch(token):
            raise ConfigurationError("token has characters a subprotocol cannot carry")
        protocols = [BEARER_SUBPROTOCOL, token, *protocols]
    elif mode == "header":
        headers["Authorization"] = f"Bearer {token}"
    else:
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
        query.append(("token", token))
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
    return url, protocols, headers


def unverified_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), read without verifying it.

    ``None`` for anything that is not three dot-separated parts with a base64url JSON
    object in the middle, or whose ``exp`` is missing, boolean or not a finite number.
    A string ``exp`` that ``int()`` reads (``"1767225600"``) counts as that number, as
    it does for PyJWT and for the server's expiry timer.
    """
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 16_384:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):  # UnicodeDecodeError and JSONDecodeError included
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, str) and len(exp) <= 64:
        try:
            exp = int(exp)
        except ValueError:
            return None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """The expiry of the token a connection runs on, and when the client got it.

    Both are wall-clock seconds since the epoch; ``expires_at`` is ``None`` for a token
    that never expires (or whose expiry the client cannot read).
    """

    expires_at: float | None
    obtained_at: float

    @classmethod
    def of(cls, token: str, *, now: float) -> TokenGrant:
        """The grant of a token just fetched."""
        return cls(unverified_expiry(token), now)


def refresh_time(grant: TokenGrant, margin: float) -> float | None:
    """When to refresh (wall clock): ``margin`` seconds before ``exp``, but not before
    half the lifetime the token had when it was fetched, so a token shorter than twice
    the margin is refreshed at half-life instead of at once. ``None``: never."""
    if grant.expires_at is None:
        return None
    lead = min(margin, max(0.0, grant.expires_at - grant.obtained_at) / 2)
    return grant.expires_at - lead


async def refresh_in_band(
    grant: TokenGrant,
    *,
    provider: Callable[[], Awaitable[str]],
    margin: float,
    exchange: Callable[[str], Awaitable[WSEnvelope]],
    on_refreshed: Callable[[TokenGrant], None],
    owner: str,
    clock: Callable[[], float] = time.time,
) -> None:
    """Keep one connection's token fresh with ``auth.refresh``; return when it cannot.

    Each turn waits until `refresh_time()`, asks ``provider`` for a token and, when
    its ``exp`` is later than the current one (or unreadable), hands it to ``exchange``
    (which sends ``auth.refresh`` on the connection and returns the answer). An ``ack``
    moves the deadline to its ``expires_at`` (``null``: no more refreshes). A provider
    that raises or returns a token no newer than the current one is asked again after a
    short pause, until the current token has expired. It returns, with a warning, on an
    ``error`` answer, a timeout or a closed connection: the server then closes 4401 at
    the deadline (or already did), and the reconnect path fetches a new token.
    """
    wake = refresh_time(grant, margin)
    while wake is not None and grant.expires_at is not None:  # each turn moves on or waits
        await asyncio.sleep(max(0.0, wake - clock()))
        expires_at, now = grant.expires_at, clock()
        try:
            token = await provider()
            fresh = TokenGrant.of(token, now=now)
        except Exception as exc:  # noqa: BLE001 - the application's provider: asked again
            logger.warning("client %s: token provider raised %s", owner, type(exc).__name__)
            fresh = None
        if fresh is None or (fresh.expires_at is not None and fresh.expires_at <= expires_at):
            left = expires_at - now
            if left <= 0:
                logger.warning("client %s: no fresh token before expiry", owner)
                return
            wake = now + min(_MAX_RETRY, max(_MIN_RETRY, left / 2))
            continue
        try:
            reply = await exchange(token)
        except (ConnectionClosedError, RequestTimeoutError) as exc:
            logger.warning("client %s: in-band token refresh failed (%s)", owner, exc.code)
            return
        data = reply.data if isinstance(reply.data, dict) else {}
        if reply.type != ACK:
            logger.warning("client %s: in-band token refresh refused (%s)", owner, data.get("code"))
            return
        answered = data.get("expires_at", fresh.expires_at)
        if isinstance(answered, bool) or not isinstance(answered, int | float | None):
            answered = fresh.expires_at
        grant = TokenGrant(None if answered is None else float(answered), now)
        on_refreshed(grant)
        logger.debug("client %s: token refreshed in band", owner)
        wake = refresh_time(grant, margin)


class TokenKeeper:
    """The envelope client's token: fetch it, place it in the handshake, refresh it in band.

    ``token`` (fixed) or ``provider`` (asked before every attempt); ``requests`` holds
    the ``auth.refresh`` waiting for its answer, at most ``answer_timeout`` seconds (but
    at least 10).
    """

    def __init__(
        self,
        *,
        token: str | None,
        provider: TokenProvider | None,
        auth: AuthMode,
        refresh_margin: float | None,
        requests: PendingRequests,
        answer_timeout: float,
        owner: str,
    ) -> None:
        self._token = token
        self._provider = provider
        self._auth = auth
        self._refresh_margin = refresh_margin
        self._requests = requests
        self._answer_timeout = max(answer_timeout, 10.0)
        self._owner = owner
        self._grant = TokenGrant(None, 0.0)

    @property
    def expires_at(self) -> float | None:
        """Wall-clock expiry of the token in use (``None``: unknown or never)."""
        return self._grant.expires_at

    async def get_token(self) -> str | None:
        """The fixed token, or a fresh one from the provider (whatever it raises)."""
        token = self._token
        if self._provider is not None:
            token = await self._provider()
        if isinstance(token, str):
            self._grant = TokenGrant.of(token, now=time.time())
        return token

    def place(self, token: str | None, handshake: Handshake) -> Handshake:
        """The handshake carrying ``token`` as the ``auth`` mode says (see `place_token()`)."""
        if token is None:
            return handshake
        url, protocols, headers = handshake
        return place_token(token, self._auth, url, protocols, headers)

    def session_work(self, session: Session) -> Coroutine[Any, Any, None] | None:
        """The in-band refresh loop for ``session``; ``None`` when there is nothing to
        refresh (a fixed token, ``refresh_margin=None``, a token without ``exp``)."""
        provider, margin = self._provider, self._refresh_margin
        if provider is None or margin is None or self._grant.expires_at is None:
            return None
        return refresh_in_band(
            self._grant,
            provider=provider,
            margin=margin,
            exchange=lambda token: self._exchange(session, token),
            on_refreshed=self._refreshed,
            owner=self._owner,
        )

    def _refreshed(self, grant: TokenGrant) -> None:
        self._grant = grant

    async def _exchange(self, session: Session, token: str) -> WSEnvelope:
        """Send ``auth.refresh`` with ``token`` on ``session``; return the answer."""
        request_id = f"refresh-{uuid.uuid4().hex}"
        frame = encode_envelope(
            {"type": AUTH_REFRESH, "data": {"token": token}, "request_id": request_id}
        )
        waiter = self._requests.open(request_id)
        session.inflight.add(request_id)
        try:
            async with asyncio.timeout(self._answer_timeout):
                try:
                    await session.ws.send(frame)
                except ConnectionClosed:
                    raise ConnectionClosedError("connection closed", code="closed") from None
                return await waiter
        except TimeoutError:
            raise RequestTimeoutError("no answer to auth.refresh", code="timeout") from None
        finally:
            self._requests.close(request_id)
            session.inflight.discard(request_id)
