"""The client's token: expiry read without verification, the refresh schedule, and the
in-band ``auth.refresh`` against the real router with a real JWT resolver.

The e2e tests run the router under uvicorn with ``WS_JWT_LEEWAY_SECONDS=0`` and expiry
enforced, so a connection whose token is not refreshed is closed 4401 at its ``exp``.
Tokens carry ``exp`` in whole seconds, so "past the original expiry" is a wall-clock
fact polled with a bound; no assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tempest_ws import CloseCode
from tempest_ws.client import Backoff, Disconnect, WebSocketClient
from tempest_ws.client._auth import (
    TokenGrant,
    place_token,
    refresh_in_band,
    refresh_time,
    unverified_expiry,
)
from tempest_ws.envelope import WSEnvelope
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.testing import serve
from tests.helpers.server_process import build_client_app
from tests.helpers.support import make_settings, token, ws_url

BOUND = 30.0
"""Upper bound of any single wait; reached only when something is broken."""
FAST = Backoff(min_delay=0.02, max_delay=0.2, factor=2.0)


def _jwt(payload: Any) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"e30.{body}.sig"


# -- without I/O --------------------------------------------------------------------------


def test_expiry_is_read_from_the_payload_without_verification() -> None:
    signed = token(expires_in=120)
    assert (
        unverified_expiry(signed)
        == json.loads(base64.urlsafe_b64decode(signed.split(".")[1] + "=="))["exp"]
    )
    assert unverified_expiry(_jwt({"exp": 1767225600.5})) == 1767225600.5
    for opaque in ["opaque-token", "a.b", "a.!!!.c", _jwt([1]), "a.bm90IGpzb24.c"]:
        assert unverified_expiry(opaque) is None
    for exp in [None, True, "soon", "9" * 65, float("nan"), float("inf")]:
        assert unverified_expiry(_jwt({"exp": exp})) is None
    # A string of digits is an exp for PyJWT and for the server, so for the client too.
    assert unverified_expiry(_jwt({"exp": "1767225600"})) == 1767225600.0
    assert unverified_expiry(_jwt({"sub": "alice"})) is None


def test_refresh_time_keeps_the_margin_but_never_before_half_life() -> None:
    assert refresh_time(TokenGrant(None, 0.0), 30.0) is None
    assert refresh_time(TokenGrant(3600.0, 0.0), 30.0) == 3570.0
    assert refresh_time(TokenGrant(4.0, 0.0), 30.0) == 2.0  # short token: at half-life
    assert refresh_time(TokenGrant(10.0, 20.0), 30.0) == 10.0  # already expired: at once


def test_the_token_goes_where_auth_says() -> None:
    url = "ws://h/ws?room=1&token=old"
    assert place_token("t1", "subprotocol", url, ["v2"], {}) == (url, ["bearer", "t1", "v2"], {})
    assert place_token("t1", "header", url, [], {})[2] == {"Authorization": "Bearer t1"}
    assert place_token("t1", "query", url, [], {})[0] == "ws://h/ws?room=1&token=t1"
    with pytest.raises(ConfigurationError):
        place_token("a b", "subprotocol", url, [], {})
    with pytest.raises(ConfigurationError):
        place_token("", "header", url, [], {})


async def test_a_provider_without_a_newer_token_stops_once_the_token_expired() -> None:
    """The loop asks again after a pause, and gives up (to the 4401 path) past ``exp``."""
    now = [100.5]  # the refresh is due: no real waiting
    asked: list[float] = []
    same = _jwt({"exp": 101})

    async def provider() -> str:
        asked.append(now[0])
        now[0] += 1.0  # each ask moves the clock past the pause it will be followed by
        return same

    async def exchange(_: str) -> WSEnvelope:
        raise AssertionError("an unchanged token is never sent")

    grant = TokenGrant(101.0, 100.0)
    async with asyncio.timeout(BOUND):
        await refresh_in_band(
            grant,
            provider=provider,
            margin=30.0,
            exchange=exchange,
            on_refreshed=lambda _: None,
            owner="t",
            clock=lambda: now[0],
        )
    assert asked == [100.5, 101.5]


# -- against the router -------------------------------------------------------------------


@pytest.fixture
async def strict_url() -> AsyncIterator[str]:
    """The client-test app; expiry enforced with no leeway."""
    settings = make_settings(WS_JWT_LEEWAY_SECONDS=0, WS_ENFORCE_TOKEN_EXPIRY=True)
    app, _ = build_client_app(settings)
    async with serve(app, settings=settings) as base:
        yield ws_url(base)


def client_for(url: str, **kwargs: Any) -> WebSocketClient:
    options: dict[str, Any] = {
        "backoff": FAST,
        "long_backoff": FAST,
        "rng": random.Random(3),
        "open_timeout": BOUND,
    }
    options.update(kwargs)
    return WebSocketClient(url, **options)


async def until(predicate: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(BOUND):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


@pytest.mark.e2e
async def test_the_connection_outlives_its_first_token_by_refreshing_in_band(
    strict_url: str,
) -> None:
    handed: list[str] = []
    disconnects: list[Disconnect] = []

    async def provider() -> str:
        handed.append(token(expires_in=4))  # exp in whole seconds: 3 to 4 s of life
        return handed[-1]

    client = client_for(strict_url, token_provider=provider, on_disconnect=disconnects.append)
    async with client:
        first_id, first_exp = client.connection_id, unverified_expiry(handed[0])
        assert first_id is not None
        assert first_exp is not None
        assert client.token_expires_at == first_exp
        await until(lambda: time.time() > first_exp + 1.0, "the first token's expiry")
        await until(lambda: len(handed) >= 3, "a second refresh")
        reply = await client.request("echo", {"still": "here"}, timeout=BOUND)
        assert reply.data == {"still": "here"}
        assert client.connection_id == first_id  # the same connection: no reconnect
        assert disconnects == []
        expires_at = client.token_expires_at
        assert expires_at is not None
        assert expires_at > first_exp
        assert expires_at in {unverified_expiry(t) for t in handed[1:]}  # the ack's


@pytest.mark.e2e
async def test_without_a_provider_the_token_expires_with_4401(strict_url: str) -> None:
    disconnects: list[Disconnect] = []
    client = client_for(strict_url, token=token(expires_in=3), on_disconnect=disconnects.append)
    async with client:
        await until(lambda: bool(disconnects), "the close at the token's expiry")
    assert disconnects[0].code == CloseCode.UNAUTHORIZED
    assert disconnects[0].established


@pytest.mark.e2e
async def test_a_refused_refresh_falls_back_to_a_reconnect(strict_url: str) -> None:
    """A refresh for another subject is refused (4401); the next connection gets a new
    token from the provider, as after any 4401."""
    subjects = iter(["alice", "mallory", "alice"])
    disconnects: list[Disconnect] = []

    async def provider() -> str:
        return token(next(subjects, "alice"), expires_in=4 if not disconnects else 300)

    client = client_for(strict_url, token_provider=provider, on_disconnect=disconnects.append)
    async with client:
        first_id = client.connection_id
        await until(lambda: bool(disconnects), "the refused refresh")
        assert disconnects[0].code == CloseCode.UNAUTHORIZED
        assert disconnects[0].reason == "token subject changed"
        await asyncio.wait_for(client.wait_connected(), BOUND)
        assert client.connection_id not in (None, first_id)
        reply = await client.request("echo", {"n": 1}, timeout=BOUND)
        assert reply.data == {"n": 1}
