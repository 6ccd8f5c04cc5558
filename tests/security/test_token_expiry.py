"""A numeric-string ``exp`` over a real socket: refused when past, enforced when future.

PyJWT accepts ``"exp": "1796587942"`` (it reads the claim with ``int()``), so the
connection's expiry timer must read it the same way, or such a token would never expire.
"""

from __future__ import annotations

import time

import jwt
import pytest
from websockets.asyncio.client import connect

from tempest_ws import CloseCode, WebSocketSettings
from tempest_ws._types import BearerResolver
from tempest_ws.testing import serve
from tests.helpers.hardening import next_of_type, until_closed
from tests.helpers.support import SECRET, build_app, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e


def string_exp_token(expires_in: float) -> str:
    """A signed token whose ``exp`` is a string of digits."""
    return token("alice", claims={"exp": str(int(time.time() + expires_in))})


def signature_only_resolver() -> BearerResolver:
    """A resolver that checks the signature but not ``exp`` (as some apps write them):
    the router's expiry timer is then the only thing that ends the connection."""

    async def resolve(candidate: str) -> str | None:
        try:
            claims = jwt.decode(
                candidate, SECRET, algorithms=["HS256"], options={"verify_exp": False}
            )
        except jwt.PyJWTError:
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) else None

    return resolve


async def _close_of(
    settings: WebSocketSettings, jwt_token: str, *, lenient: bool
) -> tuple[list[str], int, str]:
    app, hub = build_app(settings, resolver=signature_only_resolver() if lenient else None)
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", jwt_token]) as ws,  # type: ignore[list-item]
    ):
        seen, code, reason = await until_closed(ws)
        await until(lambda: hub.stats().connections == 0)
    return [envelope["type"] for envelope in seen], code, reason


@pytest.mark.parametrize("lenient", [False, True], ids=["jwt_resolver", "exp_unchecked"])
async def test_a_past_numeric_string_exp_is_refused(lenient: bool) -> None:
    settings = make_settings(WS_JWT_LEEWAY_SECONDS=0)
    types, code, reason = await _close_of(settings, string_exp_token(-60), lenient=lenient)
    assert code == CloseCode.UNAUTHORIZED
    # The JWT resolver refuses it at the handshake; with a resolver that skips exp, the
    # expiry timer fires at once.
    assert reason == ("token expired" if lenient else "unauthorized")
    assert "echo" not in types


@pytest.mark.parametrize("lenient", [False, True], ids=["jwt_resolver", "exp_unchecked"])
async def test_a_future_numeric_string_exp_closes_the_connection_at_expiry(lenient: bool) -> None:
    settings = make_settings(WS_JWT_LEEWAY_SECONDS=0)
    short = string_exp_token(3)
    expires_at = int(jwt.decode(short, options={"verify_signature": False})["exp"])
    app, hub = build_app(settings, resolver=signature_only_resolver() if lenient else None)
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", short]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        _, code, reason = await until_closed(ws)
        closed_at = time.time()
        assert (code, reason) == (CloseCode.UNAUTHORIZED, "token expired")
        assert closed_at >= expires_at - 0.25  # never before exp (tolerance: clock jitter)
        await until(lambda: hub.stats().connections == 0)
