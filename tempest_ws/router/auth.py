"""Handshake authentication: token extraction, origin matching and a JWT resolver.

Everything here is a pure function of the handshake's headers and query string, so it is
tested without sockets. The router calls `extract_token()` and `origin_allowed()`;
`jwt_bearer_resolver()` builds a ready ``bearer_resolver`` on pyjwt.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import jwt

from tempest_ws._types import BearerResolver
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire._subprotocol import BEARER_SUBPROTOCOL

__all__ = [
    "BEARER_SUBPROTOCOL",
    "ExtractedToken",
    "extract_token",
    "jwt_bearer_resolver",
    "normalize_origin",
    "origin_allowed",
]

logger = logging.getLogger("tempest_ws.auth")

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class ExtractedToken:
    """The token found in a handshake and where it came from.

    ``bearer_offered`` is true when the client offered the ``bearer`` subprotocol; the
    router must then echo ``bearer`` (and only that) or browsers fail the handshake.
    """

    token: str | None
    source: Literal["subprotocol", "header", "query", "none"]
    bearer_offered: bool


def extract_token(
    subprotocols: Sequence[str],
    headers: Mapping[str, str],
    query_string: bytes | str,
    *,
    allow_query: bool = True,
) -> ExtractedToken:
    """Find the bearer token: subprotocol first, then ``Authorization``, then ``?token=``.

    ``subprotocols`` is the list the client offered (``["bearer", "<jwt>"]``); the token is
    the entry right after ``bearer``. ``headers`` must have lower-case keys (as Starlette's
    ``Headers``). A query token is ignored when ``allow_query`` is false.
    """
    offered = [p.strip() for p in subprotocols]
    bearer_offered = BEARER_SUBPROTOCOL in (p.lower() for p in offered)
    if bearer_offered:
        index = next(i for i, p in enumerate(offered) if p.lower() == BEARER_SUBPROTOCOL)
        if index + 1 < len(offered) and offered[index + 1]:
            return ExtractedToken(offered[index + 1], "subprotocol", True)
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return ExtractedToken(credentials.strip(), "header", bearer_offered)
    if allow_query:
        if isinstance(query_string, bytes):
            query_string = query_string.decode("latin-1")
        values = parse_qs(query_string).get("token")
        if values and values[0]:
            return ExtractedToken(values[0], "query", bearer_offered)
    return ExtractedToken(None, "none", bearer_offered)


def normalize_origin(origin: str) -> tuple[str, str, int] | None:
    """Return ``(scheme, host, port)`` for a serialized origin, or ``None`` if malformed.

    Scheme and host are lower-cased, a trailing dot on the host is dropped and the default
    port is made explicit, so ``HTTPS://Example.COM:443`` equals ``https://example.com``.
    Anything that is not ``scheme://host[:port]`` (a path, userinfo, ``null``) is malformed.
    """
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _host_matches(pattern_host: str, host: str) -> bool:
    if not pattern_host.startswith("*."):
        return pattern_host == host
    suffix = pattern_host[2:].split(".")
    labels = host.split(".")
    # Compare whole DNS labels: "*.example.com" matches "a.example.com" and
    # "a.b.example.com", never "evilexample.com" or "example.com.evil.net".
    return len(labels) > len(suffix) and labels[-len(suffix) :] == suffix and all(labels)


def origin_allowed(origin: str | None, allowed: Iterable[str], *, require: bool = False) -> bool:
    """Whether a handshake's ``Origin`` header passes the allow-list ``allowed``.

    An empty allow-list allows everything. With a list, ``Origin: null`` and malformed
    origins are refused; a missing header is allowed unless ``require`` (non-browser
    clients send none, and browsers always do). ``"*"`` in the list allows every origin.
    """
    patterns = list(allowed)
    if not patterns or "*" in patterns:
        return True
    if origin is None:
        return not require
    candidate = normalize_origin(origin)
    if candidate is None:
        return False
    for pattern in patterns:
        wildcard = "://*." in pattern
        expected = normalize_origin(pattern.replace("://*.", "://wildcard.", 1))
        if expected is None:
            continue
        scheme, host, port = expected
        if wildcard:
            host = "*." + host.removeprefix("wildcard.")
        if (scheme, port) == candidate[::2] and _host_matches(host, candidate[1]):
            return True
    return False


_HMAC = frozenset({"HS256", "HS384", "HS512"})
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES256K", "ES384", "ES512"}
    | {"EdDSA"}
)
# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
_MIN_HMAC_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


def jwt_bearer_resolver(
    settings: WebSocketSettings | None = None,
    *,
    secret: str | None = None,
    public_key: str | None = None,
    algorithms: Sequence[str] | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    leeway: float | None = None,
) -> BearerResolver:
    """Build a ``bearer_resolver`` that verifies JWTs with pyjwt and returns ``sub``.

    Keyword arguments override the matching ``WS_JWT_*`` settings. The algorithm list is
    pinned (a token's own ``alg`` header never chooses it), ``none`` is refused, and HMAC
    and public-key algorithms cannot be mixed (that is the algorithm-confusion attack).
    HMAC secrets must be at least as long as the hash (32 bytes for HS256, 48 for
    HS384, 64 for HS512). ``exp`` and ``sub`` are required; ``aud`` and
    ``iss`` are checked when configured.

    The returned coroutine never raises: any invalid token (bad signature, expired, wrong
    audience, missing claim, garbage) returns ``None`` and logs the reason at INFO level
    without the token, so the router closes 4401.

    Raises:
        ConfigurationError: at build time, for a short secret, a missing key, ``none``, or
            mixed algorithm families.
    """
    settings = settings or WebSocketSettings(_env_file=None)  # type: ignore[call-arg]
    algs = list(algorithms if algorithms is not None else settings.WS_JWT_ALGORITHMS)
    if not algs:
        raise ConfigurationError("jwt_bearer_resolver needs at least one algorithm")
    unknown = [a for a in algs if a not in _HMAC | _ASYMMETRIC]
    if unknown:
        raise ConfigurationError(f"unsupported or unsafe JWT algorithm(s): {unknown}")
    if set(algs) & _HMAC and set(algs) & _ASYMMETRIC:
        raise ConfigurationError("do not mix HMAC and public-key JWT algorithms")
    key: str
    if set(algs) <= _HMAC:
        raw = secret
        if raw is None and settings.WS_JWT_SECRET is not None:
            raw = settings.WS_JWT_SECRET.get_secret_value()
        minimum = max(_MIN_HMAC_SECRET_BYTES[a] for a in algs)
        if raw is None or len(raw.encode()) < minimum:
            raise ConfigurationError(
                f"HMAC JWT secret (WS_JWT_SECRET) must be at least {minimum} bytes for {algs}"
            )
        key = raw
    else:
        pem = public_key if public_key is not None else settings.WS_JWT_PUBLIC_KEY
        if not pem:
            raise ConfigurationError("public-key JWT algorithms need WS_JWT_PUBLIC_KEY")
        key = pem
    aud = audience if audience is not None else settings.WS_JWT_AUDIENCE
    iss = issuer if issuer is not None else settings.WS_JWT_ISSUER
    skew = leeway if leeway is not None else settings.WS_JWT_LEEWAY_SECONDS
    required = ["exp", "sub"] + (["aud"] if aud else []) + (["iss"] if iss else [])

    async def resolve(token: str) -> str | None:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algs,
                audience=aud,
                issuer=iss,
                leeway=skew,
                options={"require": required},
            )
        except jwt.PyJWTError as exc:
            logger.info("token rejected: %s", type(exc).__name__)
            return None
        except Exception:  # a broken key or library bug must not reach the router
            logger.exception("token verification failed unexpectedly")
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            logger.info("token rejected: empty or non-string 'sub'")
            return None
        return subject

    return resolve
