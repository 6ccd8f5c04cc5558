"""Each WS_* setting changes behaviour where the settings are given to the SDK."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tempest_ws import WebSocketHub, jwt_bearer_resolver, uvicorn_options
from tempest_ws.testing import serve
from tests.helpers.support import build_app, make_settings, token, ws_url


def test_hub_from_settings_takes_every_hub_knob() -> None:
    hub = WebSocketHub.from_settings(
        make_settings(
            WS_MAX_CONNECTIONS_PER_USER=3,
            WS_MAX_CONNECTIONS=9,
            WS_SEND_QUEUE_SIZE=11,
            WS_CLOSE_TIMEOUT_SECONDS=0.7,
        )
    )
    assert (hub.max_per_user, hub.max_connections, hub.send_queue_size, hub.close_timeout) == (
        3,
        9,
        11,
        0.7,
    )


async def test_hub_from_settings_takes_every_history_knob() -> None:
    from tempest_ws.history import MemoryHistory

    hub = WebSocketHub.from_settings(
        make_settings(
            WS_HISTORY_TOPICS="chat:*,news",
            WS_HISTORY_MAX_MESSAGES=7,
            WS_HISTORY_MAX_AGE_SECONDS=60,
            WS_HISTORY_META_TTL_SECONDS=120,
            WS_HISTORY_RECOVERY_LIMIT=9,
            WS_HISTORY_GAP_TIMEOUT_SECONDS=0.3,
            WS_SEND_QUEUE_SIZE=100,
        )
    )
    history = hub._history
    assert history is not None
    assert isinstance(history.store, MemoryHistory)
    policy = history.policy
    assert (policy.topics, policy.max_messages, policy.max_age, policy.meta_ttl) == (
        ("chat:*", "news"),
        7,
        60,
        120,
    )
    assert (history.gap_timeout, history.replay_limit) == (0.3, 9)
    assert hub.keeps_history("news")
    assert not hub.keeps_history("news:1")
    await hub.stop()


def test_uvicorn_options_follow_the_message_limit() -> None:
    assert uvicorn_options(make_settings(WS_MAX_MESSAGE_BYTES=4096, WS_LISTEN_BACKLOG=99)) == {
        "ws_max_size": 4096,
        "ws_per_message_deflate": False,
        "ws_ping_interval": None,
        "backlog": 99,
    }


async def test_public_key_from_settings() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    resolve = jwt_bearer_resolver(make_settings(WS_JWT_PUBLIC_KEY=pem, WS_JWT_ALGORITHMS="ES256"))
    signed = jwt.encode({"sub": "k", "exp": int(time.time()) + 60}, private, algorithm="ES256")
    assert await resolve(signed) == "k"


@pytest.mark.parametrize("required", [False, True])
async def test_require_origin(required: bool) -> None:
    settings = make_settings(WS_ALLOWED_ORIGINS="https://example.com", WS_REQUIRE_ORIGIN=required)
    app, _ = build_app(settings)
    async with serve(app, settings=settings) as base:
        if required:
            with pytest.raises(InvalidStatus) as info:
                await connect(ws_url(base), subprotocols=["bearer", token()])  # type: ignore[list-item]
            assert info.value.response.status_code == 403
        else:
            async with connect(ws_url(base), subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
                assert json.loads(await ws.recv())["type"] == "hello"


@pytest.mark.parametrize("accept", [False, True])
async def test_accept_binary(accept: bool) -> None:
    from fastapi import WebSocket

    from tempest_ws import WebSocketConnection

    async def binary_echo(
        ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub
    ) -> None:
        while True:
            await ws.send_bytes(await ws.receive_bytes())

    settings = make_settings(WS_ACCEPT_BINARY=accept)
    app, _ = build_app(settings, handler=binary_echo)
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", token()]) as ws,  # type: ignore[list-item]
    ):
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(b"\x01\x02")
        reply = await ws.recv()
    if accept:
        assert reply == b"\x01\x02"
    else:
        assert json.loads(reply)["data"]["code"] == "binary_not_supported"


async def test_both_redis_classes_read_the_shared_redis_settings_alike() -> None:
    from tempest_ws.backplane.redis import RedisBackplane
    from tempest_ws.exceptions import ConfigurationError
    from tempest_ws.history.redis import RedisHistory

    settings = make_settings(
        WS_REDIS_URL="redis://127.0.0.1:1/3",
        WS_REDIS_CLUSTER=True,
        WS_REDIS_CHANNEL_PREFIX="tenant7",
        WS_REDIS_TIMEOUT_SECONDS=1.5,
        WS_REDIS_HEALTH_CHECK_SECONDS=12,
        WS_REDIS_MAX_PENDING_PUBLISHES=77,
        WS_HISTORY_TOPICS="chat:*",
    )
    backplane = RedisBackplane.from_settings(settings)
    history = RedisHistory.from_settings(settings)
    shared = ("redis://127.0.0.1:1/3", True, "tenant7", 1.5, 12, 77)
    for store, prefix in ((backplane, backplane.channel_prefix), (history, history.prefix)):
        got = (
            store.url,
            store.cluster,
            prefix,
            store.timeout,
            store.health_check_interval,
            store.max_pending,
        )
        assert got == shared, type(store).__name__
    assert history.policy.topics == ("chat:*",)
    for cls in (RedisBackplane, RedisHistory):
        with pytest.raises(ConfigurationError, match="WS_REDIS_URL"):
            cls.from_settings(make_settings())
