"""Token attacks against the quickstart app (``examples/minimal.py``) over real uvicorn.

Every forged, foreign, stale or garbled token is refused with 4401 after the handshake
(so a browser can read the code), before the handler runs and before any topic is
touched. A valid token proves each setup accepts what it should.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any
from uuid import uuid4

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect

from tempest_ws import CloseCode
from tempest_ws.testing import make_token, serve
from tests.helpers.hardening import next_of_type, until_closed
from tests.helpers.support import SECRET, token, until, ws_url
from tests.security._support import b64url, bearer, close_of, forge_jwt

pytestmark = pytest.mark.e2e

Loader = Callable[..., ModuleType]


def claims(**extra: Any) -> dict[str, Any]:
    """A subject the quickstart accepts (a UUID) and an ``exp`` five minutes ahead."""
    return {"sub": str(uuid4()), "exp": int(time.time()) + 300, **extra}


def rsa_keys() -> tuple[bytes, str]:
    """A fresh RSA private key (PEM) and its public key (PEM text)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def hs512(payload: dict[str, Any]) -> str:
    """Signed with the right secret, but with HS512, which the app did not pin."""
    head = b64url(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    mac = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha512).digest()
    return f"{head}.{body}.{b64url(mac)}"


async def assert_refused(minimal: ModuleType, subprotocols: list[Any]) -> None:
    """The quickstart closes this handshake 4401 and keeps no connection."""
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        code, _ = await close_of(ws_url(base), subprotocols=subprotocols)
        assert code == CloseCode.UNAUTHORIZED
        await until(lambda: minimal.hub.stats().connections == 0)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_token_closes_4401(load_minimal: Loader, alg: str) -> None:
    minimal = load_minimal()
    unsigned = forge_jwt({"alg": alg, "typ": "JWT"}, claims())
    await assert_refused(minimal, ["bearer", unsigned])


async def test_hs256_token_signed_with_the_rsa_public_key_closes_4401(
    load_minimal: Loader,
) -> None:
    """HS/RS confusion: the attacker uses the (public) RSA key as an HMAC secret."""
    private, public = rsa_keys()
    minimal = load_minimal(WS_JWT_ALGORITHMS='["RS256"]', WS_JWT_PUBLIC_KEY=public)
    genuine = jwt.encode(claims(), private, algorithm="RS256")
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims()).encode())
    mac = hmac.new(public.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{head}.{body}.{b64url(mac)}"
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        async with connect(url, subprotocols=["bearer", genuine]) as ws:
            assert (await next_of_type(ws, "hello"))["type"] == "hello"  # RS256 works
        code, _ = await close_of(url, subprotocols=["bearer", forged])
        assert code == CloseCode.UNAUTHORIZED


async def test_rs256_token_against_the_hs256_quickstart_closes_4401(
    load_minimal: Loader,
) -> None:
    """The reverse confusion: a token signed with a key the attacker owns."""
    private, _ = rsa_keys()
    minimal = load_minimal()
    await assert_refused(minimal, ["bearer", jwt.encode(claims(), private, algorithm="RS256")])


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: "garbage", id="not-a-jwt"),
        pytest.param(lambda: "a.b.c", id="three-garbage-segments"),
        pytest.param(
            lambda: make_token(str(uuid4()), secret="another-secret-0123456789abcdef-0123"),
            id="wrong-key",
        ),
        pytest.param(lambda: token(str(uuid4())) + "x", id="tampered-signature"),
        pytest.param(lambda: jwt.encode({"sub": str(uuid4())}, SECRET), id="no-exp"),
        pytest.param(lambda: jwt.encode({"exp": int(time.time()) + 60}, SECRET), id="no-sub"),
        pytest.param(lambda: token("not-a-uuid"), id="subject-not-a-uuid"),
        pytest.param(lambda: hs512(claims()), id="right-key-unpinned-algorithm"),
    ],
)
async def test_bad_token_closes_4401(load_minimal: Loader, bad: Callable[[], str]) -> None:
    minimal = load_minimal()
    await assert_refused(minimal, ["bearer", bad()])


async def test_missing_token_closes_4401(load_minimal: Loader) -> None:
    minimal = load_minimal()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        code, _ = await close_of(ws_url(base))
        assert code == CloseCode.UNAUTHORIZED


async def test_expired_token_closes_4401(load_minimal: Loader) -> None:
    minimal = load_minimal(WS_JWT_LEEWAY_SECONDS=0)
    await assert_refused(minimal, bearer(expires_in=-5))


async def test_token_expiring_while_connected_closes_4401(load_minimal: Loader) -> None:
    minimal = load_minimal(WS_JWT_LEEWAY_SECONDS=0)
    user = uuid4()
    minimal.room_members["lobby"] = {user}
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        async with connect(ws_url(base), subprotocols=bearer(user, expires_in=2)) as ws:
            await next_of_type(ws, "hello")
            _, code, reason = await until_closed(ws)
        assert (code, reason) == (CloseCode.UNAUTHORIZED, "token expired")
        await until(lambda: minimal.hub.stats().connections == 0)
