"""Token extraction, origin matching and the JWT resolver, without sockets."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tempest_ws import ConfigurationError, jwt_bearer_resolver, origin_allowed
from tempest_ws.router.auth import extract_token, normalize_origin
from tests.helpers.support import SECRET, make_settings, token


class TestExtractToken:
    def test_subprotocol_wins(self) -> None:
        found = extract_token(
            ["bearer", "sub-tok"], {"authorization": "Bearer hdr-tok"}, b"token=q-tok"
        )
        assert (found.token, found.source, found.bearer_offered) == ("sub-tok", "subprotocol", True)

    def test_header_then_query(self) -> None:
        assert extract_token([], {"authorization": "Bearer hdr"}, b"token=q").source == "header"
        found = extract_token([], {}, b"a=1&token=q-tok")
        assert (found.token, found.source) == ("q-tok", "query")

    def test_query_refused_when_disabled(self) -> None:
        found = extract_token([], {}, b"token=q-tok", allow_query=False)
        assert found.token is None

    def test_bearer_offered_without_token_still_echoes(self) -> None:
        found = extract_token(["bearer"], {}, b"token=q")
        assert (found.token, found.bearer_offered) == ("q", True)

    def test_nothing(self) -> None:
        assert extract_token(["chat"], {"authorization": "Basic abc"}, b"").token is None


ALLOWED = ["https://example.com", "https://*.example.com", "http://localhost:8000"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",
        "HTTPS://Example.COM:443",
        "https://example.com/",
        "https://app.example.com",
        "https://a.b.example.com",
        "http://localhost:8000",
        None,
    ],
)
def test_allowed_origins(origin: str | None) -> None:
    assert origin_allowed(origin, ALLOWED)


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com.evil.net",
        "https://evilexample.com",
        "https://evil.net/https://example.com",
        "http://example.com",  # scheme downgrade
        "https://example.com:8443",  # other port
        "http://localhost:8001",
        "null",
        "https://user@example.com",
        "https://.example.com",
        "https://example.com?x=1",
        "file://example.com",
        "",
    ],
)
def test_bypass_attempts_rejected(origin: str) -> None:
    assert not origin_allowed(origin, ALLOWED)


def test_empty_list_and_star_allow_everything() -> None:
    assert origin_allowed("null", [])
    assert origin_allowed("https://anything.net", ["*"])


def test_missing_origin_refused_when_required() -> None:
    assert not origin_allowed(None, ALLOWED, require=True)


def test_normalize() -> None:
    assert normalize_origin("https://EXAMPLE.com.") == ("https", "example.com", 443)
    assert normalize_origin("https://example.com:99999") is None


class TestJwtResolver:
    async def test_valid_token(self) -> None:
        resolve = jwt_bearer_resolver(make_settings())
        assert await resolve(token("alice")) == "alice"

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "garbage",
            "a.b.c",
            jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, "w" * 40, algorithm="HS256"),
            token("alice", expires_in=-30),
            jwt.encode({"sub": "a"}, SECRET, algorithm="HS256"),  # no exp
            jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),  # no sub
            jwt.encode({"sub": "", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        ],
    )
    async def test_rejected(self, bad: str) -> None:
        resolve = jwt_bearer_resolver(make_settings())
        assert await resolve(bad) is None

    async def test_algorithm_is_pinned(self) -> None:
        secret = "s" * 64
        resolve = jwt_bearer_resolver(make_settings(WS_JWT_SECRET=secret))
        claims = {"sub": "a", "exp": int(time.time()) + 60}
        assert await resolve(jwt.encode(claims, secret, algorithm="HS256")) == "a"
        assert await resolve(jwt.encode(claims, secret, algorithm="HS512")) is None

    async def test_alg_none_is_rejected(self) -> None:
        def b64(part: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

        unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': 'a', 'exp': 2**40})}."
        assert await jwt_bearer_resolver(make_settings())(unsigned) is None

    async def test_audience_issuer_and_leeway(self) -> None:
        resolve = jwt_bearer_resolver(
            make_settings(WS_JWT_AUDIENCE="api", WS_JWT_ISSUER="auth", WS_JWT_LEEWAY_SECONDS=60)
        )
        good = token("a", claims={"aud": "api", "iss": "auth"}, expires_in=-10)
        assert await resolve(good) == "a"
        assert await resolve(token("a", claims={"aud": "other", "iss": "auth"})) is None
        assert await resolve(token("a", claims={"aud": "api"})) is None

    @pytest.mark.parametrize("family", ["RS256", "ES256"])
    async def test_public_key_algorithms(self, family: str) -> None:
        private = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if family == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        resolve = jwt_bearer_resolver(make_settings(), algorithms=[family], public_key=pem)
        signed = jwt.encode({"sub": "k", "exp": int(time.time()) + 60}, private, algorithm=family)
        assert await resolve(signed) == "k"
        # An HS256 token "signed" with the public key text must not pass (alg confusion).
        forged = jwt.encode({"sub": "k", "exp": int(time.time()) + 60}, "x" * 64, algorithm="HS256")
        assert await resolve(forged) is None

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"secret": "short"},
            {"secret": "s" * 40, "algorithms": ["HS512"]},
            {"algorithms": ["none"]},
            {"algorithms": []},
            {"algorithms": ["HS256", "RS256"]},
            {"algorithms": ["RS256"]},  # no public key
        ],
    )
    def test_unsafe_configuration_refused(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ConfigurationError):
            jwt_bearer_resolver(make_settings(), **kwargs)  # type: ignore[arg-type]

    async def test_resolver_never_raises_and_never_logs_the_token(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        resolve = jwt_bearer_resolver(make_settings())
        secret_looking = token("alice", expires_in=-100)
        assert await resolve(secret_looking) is None
        assert secret_looking not in caplog.text
        assert "ExpiredSignatureError" in caplog.text
