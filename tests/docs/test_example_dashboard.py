"""examples/dashboard.py: pushes reach the dashboard topic's subscribers, in order, and
nobody else; the push task lives and dies with the app's lifespan."""

from __future__ import annotations

import httpx

from examples import dashboard
from tempest_ws.testing import expect_envelope, live_server
from tests.helpers.support import make_settings, token

PUSHES = 3


async def test_subscribers_get_ordered_pushes_and_others_none() -> None:
    app = dashboard.create_app(make_settings(), interval=0.05)
    async with live_server(app) as server:
        async with (
            server.connect(token("dashboard-bystander")) as bystander,
            server.connect(token("dashboard-viewer")) as viewer,
        ):
            await viewer.send_envelope("subscribe", {"topic": "dashboard"}, request_id="s1")
            ack = await viewer.expect("ack", skip_others=True)
            assert ack.request_id == "s1"
            seqs = []
            for _ in range(PUSHES):
                push = await viewer.expect(dashboard.METRICS)
                assert push.data["hub"]["subscriptions"] == 1
                assert push.data["cluster"]["node_id"]
                seqs.append(push.data["seq"])
            assert seqs == list(range(seqs[0], seqs[0] + PUSHES))
            # Every push so far was queued before this ping's pong: had the bystander
            # been sent one, it would arrive first and expect_envelope would fail.
            await bystander.send_envelope("ping", request_id="p1")
            pong = await expect_envelope(bystander, "pong")
            assert pong.request_id == "p1"
        task = app.state.push_task
        assert not task.done()
    assert task.cancelled()


async def test_page_health_token_and_metrics() -> None:
    app = dashboard.create_app(make_settings(), interval=60)
    async with (
        live_server(app) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        page = await http.get("/")
        assert page.status_code == 200
        assert 'import { TempestWS } from "/ws/client.js"' in page.text
        assert (await http.get("/ws/client.js")).status_code == 200
        health = (await http.get("/health")).json()
        assert health["status"] == "ok"
        assert health["hub"]["connections"] == 0
        issued = (await http.post("/api/token")).json()["token"]
        async with server.connect(issued) as client:
            assert client.connection_id
        assert "tempest_ws_connections_open" in (await http.get("/metrics")).text
