"""Origin bypass attempts against the quickstart app over real uvicorn.

With ``WS_ALLOWED_ORIGINS`` set, a handshake from an origin not on the list is refused
with HTTP 403 before it is accepted: no token is resolved and no handler runs. The
list here is one exact origin and one wildcard; ``WS_REQUIRE_ORIGIN`` refuses a
handshake without the header.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tempest_ws.testing import serve
from tests.helpers.hardening import next_of_type
from tests.helpers.support import ws_url
from tests.security._support import bearer

pytestmark = pytest.mark.e2e

Loader = Callable[..., ModuleType]
ALLOWED = "https://app.example.com, https://*.example.org"


async def refused_status(url: str, origin: str | None) -> int:
    """The HTTP status of a handshake the server must refuse."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, subprotocols=bearer(), origin=origin)  # type: ignore[arg-type]
    return refused.value.response.status_code


async def assert_all_refused(load_minimal: Loader, origins: list[str], **env: str) -> None:
    minimal = load_minimal(WS_ALLOWED_ORIGINS=ALLOWED, **env)
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        async with connect(url, subprotocols=bearer(), origin="https://app.example.com") as ws:
            await next_of_type(ws, "hello")  # the listed origin gets in
        statuses = {origin: await refused_status(url, origin) for origin in origins}
        assert statuses == dict.fromkeys(origins, 403)
        assert minimal.hub.stats().connections == 0


async def test_missing_origin_is_refused_when_required(load_minimal: Loader) -> None:
    minimal = load_minimal(WS_ALLOWED_ORIGINS=ALLOWED, WS_REQUIRE_ORIGIN="true")
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        assert await refused_status(ws_url(base), None) == 403


async def test_null_origin_is_refused(load_minimal: Loader) -> None:
    await assert_all_refused(load_minimal, ["null", "NULL", " null"])


async def test_suffix_and_prefix_matches_are_refused(load_minimal: Loader) -> None:
    await assert_all_refused(
        load_minimal,
        [
            "https://app.example.com.evil.net",  # the allowed host as a prefix
            "https://evilapp.example.com",  # as a suffix of another host
            "https://evil-app.example.com",
            "https://evilexample.org",  # the wildcard's domain without its dot
            "https://example.org",  # a wildcard needs a label before the domain
            "https://example.org.evil.net",
            "https://a.example.org.evil.net",
        ],
    )


async def test_case_and_encoding_tricks_are_refused(load_minimal: Loader) -> None:
    await assert_all_refused(
        load_minimal,
        [
            "HTTPS://APP.EXAMPLE.COM.EVIL.NET",  # case does not hide a suffix
            "https://APP.example.com.Evil.net",
            "https://app%2eexample%2ecom",  # percent-encoded dots
            "https://app.example.com@evil.net",  # userinfo
            "https://evil.net#app.example.com",
            "https://evil.net/app.example.com",
            "https://evil.net?https://app.example.com",
            "https://app.example.com\\@evil.net",
        ],
    )


async def test_scheme_and_port_changes_are_refused(load_minimal: Loader) -> None:
    await assert_all_refused(
        load_minimal,
        [
            "http://app.example.com",  # downgraded scheme
            "wss://evil.net",
            "https://app.example.com:8443",  # another port
            "https://app.example.com:443.evil.net",
            "https://shop.example.org:444",
            "file://app.example.com",
        ],
    )


async def test_listed_origin_in_other_case_is_the_same_origin(load_minimal: Loader) -> None:
    """Not a bypass: scheme and host are case-insensitive, so this is the listed origin."""
    minimal = load_minimal(WS_ALLOWED_ORIGINS=ALLOWED, WS_REQUIRE_ORIGIN="true")
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        for origin in ("HTTPS://App.Example.COM", "https://app.example.com:443"):
            async with connect(ws_url(base), subprotocols=bearer(), origin=origin) as ws:  # type: ignore[arg-type]
                await next_of_type(ws, "hello")
