"""The router in-process with Starlette's TestClient (fast; handshake details are e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import tempest_ws
from tempest_ws import CloseCode
from tests.helpers.support import build_app, make_settings, token


def test_authenticated_round_trip_and_cleanup() -> None:
    app, hub = build_app(make_settings())
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", subprotocols=["bearer", token("alice")]) as ws,
    ):
        assert ws.accepted_subprotocol == "bearer"
        assert ws.receive_json()["type"] == "hello"
        ws.send_json({"type": "echo", "data": {"n": 1}})
        assert ws.receive_json() == {"type": "echo", "data": {"n": 1}}
        assert hub.stats().connections == 1
    assert hub.stats().connections == 0


def test_missing_token_closes_4401() -> None:
    app, _ = build_app(make_settings())
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws") as ws,
        pytest.raises(WebSocketDisconnect) as info,
    ):
        ws.receive_json()
    assert info.value.code == CloseCode.UNAUTHORIZED


def test_client_modules_are_served_with_the_headers_of_the_one_file() -> None:
    app, _ = build_app(make_settings())
    modules = sorted((Path(tempest_ws.__file__).parent / "static" / "client").glob("*.js"))
    assert "tempest-ws.js" in {module.name for module in modules}
    with TestClient(app) as client:
        one_file = client.get("/ws/client.js")
        for module in modules:
            response = client.get(f"/ws/client/{module.name}")
            assert response.status_code == 200, module.name
            assert response.headers["content-type"] == one_file.headers["content-type"]
            assert response.headers["cache-control"] == one_file.headers["cache-control"]
            assert response.content == module.read_bytes()
        assert client.get("/ws/client/nope.js").status_code == 404
    assert one_file.headers["content-type"] == "text/javascript; charset=utf-8"
    assert one_file.headers["cache-control"] == "no-cache"


def test_client_script_is_served() -> None:
    app, _ = build_app(make_settings())
    with TestClient(app) as client:
        response = client.get("/ws/client.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.content
