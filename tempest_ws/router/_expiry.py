"""Token lifetime: a connection lives as long as its token, unless refreshed in band.

The bearer resolver returns only a user id, so the expiry is read from the token itself:
`token_expiry()` takes the ``exp`` claim of a JWT *without verifying it again* (the
resolver already did); anything that is not a JWT, or has no numeric ``exp``, never
expires. An ``exp`` written as a string of digits (``"1796587942"``) counts as that
number, because PyJWT accepts it as one. `TokenLifetime` arms one timer per
connection at ``exp + leeway`` and runs ``on_expired`` when it fires. A client keeps its
connection by sending::

    {"type": "auth.refresh", "data": {"token": "<new token>"}, "request_id": "r1"}

before then: the new token goes through the same resolver and must name the same
subject; the deadline then moves to the new token's ``exp``. A refused token or another
subject ends the connection (4401, by the caller).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import jwt

from tempest_ws._types import BearerResolver
from tempest_ws.wire.envelope import AUTH_REFRESH

__all__ = [
    "AUTH_REFRESH",
    "RefreshOutcome",
    "TokenLifetime",
    "refresh_token_of",
    "seconds_left",
    "token_expiry",
]

logger = logging.getLogger("tempest_ws.auth")

"""Envelope type of an in-band token refresh; the router answers it and never passes it on."""

MAX_TOKEN_LENGTH: Final = 16_384


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of ``token`` (seconds since the epoch), or ``None``.

    The signature is *not* checked: call this only on a token the resolver accepted.
    ``None`` for anything that is not a JWT or whose ``exp`` is missing or not a finite
    number. A string ``exp`` is read as PyJWT reads it, with ``int()``: PyJWT accepts
    ``"exp": "1796587942"`` as a valid expiry, so the deadline must honour it too (a
    string ``int()`` refuses, such as ``"soon"``, gives ``None``; PyJWT refuses such a
    token before it gets here).
    """
    if token.count(".") != 2:
        return None  # not a compact JWT: skip the library's exception path
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, str):
        exp = _int_of(exp)
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    value = float(exp)
    return value if math.isfinite(value) else None


def _int_of(text: str) -> int | None:
    """``int(text)`` as PyJWT's ``exp`` check computes it, or ``None`` when it refuses."""
    if len(text) > 64:
        return None  # no timestamp is that long; keeps int() off huge digit strings
    try:
        return int(text)
    except ValueError:
        return None


def seconds_left(expires_at: float, *, leeway: float, now: float) -> float:
    """Seconds until a token with ``exp == expires_at`` must be refused (may be negative)."""
    return expires_at + leeway - now


def refresh_token_of(data: Any) -> str | None:
    """The token an ``auth.refresh`` envelope's ``data`` carries, or ``None`` if malformed."""
    if not isinstance(data, dict):
        return None
    token = data.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What a refresh did: ``ok``, or the (token-free) ``reason`` it was refused."""

    ok: bool
    reason: str
    expires_at: float | None = None


class TokenLifetime:
    """One connection's token deadline on the running loop.

    Args:
        user_key: ``str`` of the user id the connection was opened for.
        resolver: the router's bearer resolver, called again for refreshed tokens.
        leeway: seconds allowed past ``exp`` (``WS_JWT_LEEWAY_SECONDS``).
        on_expired: plain callable run from a timer when the deadline passes (and no
            refresh is in flight); it must not block.
        enforce: when false, nothing expires (refreshes are still verified).
        refresh_timeout: bound on one resolver call for a refresh.
        wall_clock: seconds since the epoch (``exp`` is wall-clock time).
    """

    __slots__ = (
        "_clock",
        "_enforce",
        "_handle",
        "_leeway",
        "_on_expired",
        "_refresh_timeout",
        "_refreshing",
        "_resolver",
        "_stopped",
        "expires_at",
        "user_key",
    )

    def __init__(
        self,
        *,
        user_key: str,
        resolver: BearerResolver,
        leeway: float,
        on_expired: Callable[[], None],
        enforce: bool = True,
        refresh_timeout: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.user_key = user_key
        self.expires_at: float | None = None
        self._resolver = resolver
        self._leeway = leeway
        self._on_expired = on_expired
        self._enforce = enforce
        self._refresh_timeout = refresh_timeout
        self._clock = wall_clock
        self._handle: asyncio.TimerHandle | None = None
        self._refreshing = False
        self._stopped = False

    def start(self, token: str) -> None:
        """Arm the timer for ``token`` (already accepted by the resolver)."""
        self._arm(token_expiry(token))

    def stop(self) -> None:
        """Disarm for good: the connection is closing."""
        self._stopped = True
        self._cancel()

    async def refresh(self, token: str) -> RefreshOutcome:
        """Verify ``token`` with the resolver and move the deadline to its ``exp``.

        Refused when the resolver returns ``None``, raises or times out, or names another
        user. A deadline that passes while the resolver runs waits for its answer.
        """
        if self._stopped:
            return RefreshOutcome(False, "connection closing")
        self._refreshing = True
        try:
            async with asyncio.timeout(self._refresh_timeout):
                user_id = await self._resolver(token)
        except TimeoutError:
            user_id, reason = None, "token refresh timed out"
        except Exception:
            logger.exception("bearer resolver raised on a token refresh")
            user_id, reason = None, "token refresh rejected"
        else:
            reason = "token refresh rejected"
        finally:
            self._refreshing = False
        if user_id is None:
            return RefreshOutcome(False, reason)
        if str(user_id) != self.user_key:
            return RefreshOutcome(False, "token subject changed")
        self._arm(token_expiry(token))
        return RefreshOutcome(True, "refreshed", self.expires_at)

    def _arm(self, expires_at: float | None) -> None:
        self._cancel()
        self.expires_at = expires_at
        if expires_at is None or not self._enforce or self._stopped:
            return
        delay = seconds_left(expires_at, leeway=self._leeway, now=self._clock())
        self._handle = asyncio.get_running_loop().call_later(max(0.0, delay), self._fire)

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._stopped:
            return
        if self._refreshing:
            return  # the answer decides: a good token re-arms, a refused one closes anyway
        self._on_expired()
