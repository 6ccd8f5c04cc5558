"""tempest_ws.metrics: values after a scripted session over a real uvicorn, labels that
stay low-cardinality, the event observer, multiprocess mode and the optional extra."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tempest_ws import (
    WebSocketHub,
    allow_any_topic,
)
from tempest_ws.metrics import (
    ALLOWED_LABELS,
    WebSocketMetrics,
    add_metrics_route,
    hub_snapshot,
)
from tempest_ws.observe import _audit
from tempest_ws.testing import expect_envelope, live_server
from tests.helpers.support import build_app, echo_handler, make_settings, token

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metrics_app() -> Iterator[tuple[object, WebSocketMetrics]]:
    settings = make_settings(
        WS_ALLOWED_ORIGINS=["http://good.example"],
        WS_RATE_LIMIT_MESSAGES=5,
        WS_RATE_LIMIT_WINDOW_SECONDS=3600,
    )
    app, hub = build_app(settings)
    with add_metrics_route(app, hub) as metrics:
        yield app, metrics


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def scrape_until_open(client: httpx.AsyncClient, expected: int) -> Samples:
    """Scrape until the server has cleaned up the sessions that ended (bounded)."""
    for _ in range(200):
        samples = await scrape(client)
        if value(samples, "tempest_ws_connections_open") == expected:
            return samples
    raise AssertionError(f"connections_open never reached {expected}")


async def test_scripted_session_metrics(metrics_app: tuple[object, WebSocketMetrics]) -> None:
    app, _ = metrics_app
    users = ("metrics-alice-7f3a", "metrics-bob-91c2", "metrics-carol-5d10")
    topic = "room-metrics-secret-42"
    connection_ids: set[str] = set()
    async with (
        live_server(app) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        # 1. a refused origin (HTTP 403 before accept)
        with pytest.raises(InvalidStatus):
            async with server.connect(token(users[0]), origin="http://evil.example"):
                pass
        # 2. a bad token (4401)
        async with server.connect("not-a-token", wait_hello=False) as refused:
            assert await refused.expect_close() == 4401
        # 3. a subscriber and a publisher; one frame through the hub
        async with (
            server.connect(token(users[0])) as alice,
            server.connect(token(users[1])) as bob,
        ):
            connection_ids |= {alice.connection_id, bob.connection_id}
            await alice.send_envelope("subscribe", {"topic": topic})
            await expect_envelope(alice, "subscribed")
            await bob.send_envelope("publish", {"topic": topic, "payload": {"n": 1}})
            await expect_envelope(alice, "published")
            live = await scrape(http)
            assert value(live, "tempest_ws_connections_open") == 2
            assert value(live, "tempest_ws_users_connected") == 2
            assert value(live, "tempest_ws_subscriptions") == 1
        # 4. a flood past the rate limit (4429)
        async with server.connect(token(users[2])) as carol:
            connection_ids.add(carol.connection_id)
            for n in range(6):
                await carol.send(json.dumps({"type": "echo", "data": {"n": n}}))
            assert await carol.expect_close() == 4429
        samples = await scrape_until_open(http, 0)

    assert value(samples, "tempest_ws_handshake_rejections_total", reason="origin") == 1
    assert value(samples, "tempest_ws_handshake_rejections_total", reason="auth") == 1
    assert value(samples, "tempest_ws_handshake_rejections_total", reason="limit") == 0
    assert value(samples, "tempest_ws_handshake_rejections_total", reason="refused") == 0
    assert value(samples, "tempest_ws_rate_limited_total") == 1
    assert value(samples, "tempest_ws_security_events_total", event="origin_rejected") == 1
    assert value(samples, "tempest_ws_security_events_total", event="auth_failed") == 1
    assert value(samples, "tempest_ws_security_events_total", event="rate_limited") == 1
    assert value(samples, "tempest_ws_hub_frames_queued_total") == 1
    assert value(samples, "tempest_ws_slow_consumers_dropped_total") == 0
    assert value(samples, "tempest_ws_heartbeat_timeouts_total") == 0
    assert value(samples, "tempest_ws_backplane_connected") == 1
    assert value(samples, "tempest_ws_backplane_publish_errors_total") == 0
    assert value(samples, "tempest_ws_connections_open") == 0
    assert value(samples, "tempest_ws_subscriptions") == 0

    # No high-cardinality label: only allowed names, never an id, a user or a topic.
    forbidden = {*users, topic, *connection_ids}
    assert len(connection_ids) == 3
    for name, labels in samples:
        assert name.startswith("tempest_ws_")
        for label, label_value in labels:
            assert label in ALLOWED_LABELS, (name, label)
            assert label_value not in forbidden, (name, label, label_value)
            assert not any(secret in label_value for secret in forbidden), (name, label_value)


async def test_per_connection_counters_over_a_session(
    metrics_app: tuple[object, WebSocketMetrics],
) -> None:
    app, _ = metrics_app
    async with (
        live_server(app) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        async with server.connect(token("metrics-dave")) as dave:
            await dave.send_envelope("echo", {"text": "héllo"})
            await expect_envelope(dave, "echo")
            await dave.send_envelope("close", {"code": 4000})
            assert await dave.expect_close() == 4000
        samples = await scrape_until_open(http, 0)
    assert value(samples, "tempest_ws_connections_opened_total") == 1
    assert value(samples, "tempest_ws_connections_closed_total", code="4000") == 1
    assert value(samples, "tempest_ws_messages_received_total") == 2
    assert value(samples, "tempest_ws_messages_sent_total") == 2  # hello + echo
    assert value(samples, "tempest_ws_received_bytes_total") > 0


async def test_history_metrics_after_a_scripted_session() -> None:
    settings = make_settings(WS_HISTORY_TOPICS=["chat:*"])
    hub = WebSocketHub.from_settings(settings, topic_authorizer=allow_any_topic)
    app, _ = build_app(settings, handler=echo_handler, hub=hub, builtins={"subscribe"})
    add_metrics_route(app, hub).close()
    topic = "chat:metrics-secret-17"
    async with (
        live_server(app) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        async with server.connect(token("hist-bob")) as bob:
            for n in range(3):
                await bob.send_envelope("publish", {"topic": topic, "payload": {"n": n}})
            # 1. a first subscribe (no position): the current position, recovered false
            async with server.connect(token("hist-ann")) as ann:
                await ann.send_envelope("subscribe", {"topic": topic})
                await expect_envelope(ann, "ack")
                start = (await expect_envelope(ann, "recovery")).data
                assert (start["offset"], start["recovered"]) == (3, False)
                epoch = start["epoch"]
                # 2. a resume from offset 1: two replayed, recovered true
                async with server.connect(token("hist-cy")) as cy:
                    await cy.send_envelope(
                        "subscribe", {"topic": topic, "offset": 1, "epoch": epoch}
                    )
                    await expect_envelope(cy, "ack")
                    for _ in range(2):
                        await expect_envelope(cy, "published")
                    assert (await expect_envelope(cy, "recovery")).data["recovered"] is True
                # 3. a resume in an epoch the store never had: recovered false
                async with server.connect(token("hist-dee")) as dee:
                    other = "0" * len(epoch)
                    await dee.send_envelope(
                        "subscribe", {"topic": topic, "offset": 1, "epoch": other}
                    )
                    await expect_envelope(dee, "ack")
                    assert (await expect_envelope(dee, "recovery")).data["recovered"] is False
                    live = await scrape(http)
                    assert value(live, "tempest_ws_history_topics_followed") == 1
        samples = await scrape_until_open(http, 0)

    assert value(samples, "tempest_ws_history_topics_followed") == 0
    expected = {
        "appends": 3,
        "append_failures": 0,
        "replays_recovered": 1,
        "replays_unrecovered": 1,  # the first subscribe is no resume: not counted
        "messages_replayed": 2,
        "gap_messages_filled": 0,
        "gap_messages_skipped": 0,
        "discontinuity_notices": 0,
        "stale_messages_dropped": 0,
        "seams_overflowed": 0,
    }
    for field, count in expected.items():
        assert value(samples, f"tempest_ws_history_{field}_total") == count, field
    assert dataclasses.asdict(hub.history_stats()) == {"topics_followed": 0, **expected}
    assert hub_snapshot(hub)["history"]["appends"] == 3
    for name, labels in samples:  # no topic label, no topic in a label value
        assert all(topic not in label_value for _, label_value in labels), name


# -- the observer side, fed as the hooks will feed it ---------------------------------


def test_hook_events_feed_the_counters() -> None:
    _, hub = build_app(make_settings())
    registry = CollectorRegistry()
    with WebSocketMetrics(hub, registry=registry) as metrics:
        _audit.traffic_event("connection_opened")
        _audit.frame_in({"type": "websocket.receive", "text": "héllo"})
        _audit.frame_in({"type": "websocket.receive", "bytes": b"\x00\x01\x02"})
        _audit.frame_out('{"type":"x"}')
        _audit.frame_out("é")
        _audit.traffic_event("connection_closed", code=4408)
        _audit.traffic_event("backplane_published")
        _audit.traffic_event("backplane_reconnected")
        _audit.security_event("heartbeat_timeout", "c1", "silent", level=logging.DEBUG)
        _audit.security_event("slow_consumer", "c1", "queue full", level=logging.DEBUG)
        _audit.security_event("address_limit", "h1", "too many", level=logging.DEBUG)
        _audit.security_event("connect_refused", "c2", "hook", level=logging.DEBUG)
        samples = parse(metrics.render()[0].decode())
    _audit.traffic_event("connection_opened")  # after close(): not counted
    after = parse(metrics.render()[0].decode())
    assert value(samples, "tempest_ws_connections_opened_total") == 1
    assert value(after, "tempest_ws_connections_opened_total") == 1
    assert value(samples, "tempest_ws_messages_received_total") == 2
    assert value(samples, "tempest_ws_received_bytes_total") == 6 + 3
    assert value(samples, "tempest_ws_messages_sent_total") == 2
    assert value(samples, "tempest_ws_sent_bytes_total") == 12 + 2
    assert value(samples, "tempest_ws_connections_closed_total", code="4408") == 1
    assert value(samples, "tempest_ws_backplane_published_total") == 1
    assert value(samples, "tempest_ws_backplane_reconnects_total") == 1
    assert value(samples, "tempest_ws_heartbeat_timeouts_total") == 1
    assert value(samples, "tempest_ws_slow_consumers_dropped_total") == 1
    assert value(samples, "tempest_ws_handshake_rejections_total", reason="limit") == 1
    assert value(samples, "tempest_ws_handshake_rejections_total", reason="refused") == 1
    assert ("tempest_ws_security_events_total", (("event", "frame_in"),)) not in samples


def test_a_failing_observer_is_logged_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def broken(event: str, fields: object) -> None:
        raise RuntimeError("observer bug")

    remove_broken = _audit.add_event_observer(broken)
    remove_seen = _audit.add_event_observer(lambda event, fields: seen.append(event))
    try:
        with caplog.at_level(logging.ERROR, logger="tempest_ws"):
            _audit.security_event("rate_limited", "c1", "flood", level=logging.DEBUG)
    finally:
        remove_broken()
        remove_seen()
    assert seen == ["rate_limited"]
    assert "event observer" in caplog.text
    _audit.security_event("rate_limited", "c1", "flood", level=logging.DEBUG)
    assert seen == ["rate_limited"]


def test_hub_snapshot_is_plain_data() -> None:
    _, hub = build_app(make_settings())
    snapshot = hub_snapshot(hub)
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["hub"]["connections"] == 0
    assert snapshot["cluster"]["node_id"] == hub.node_id


async def test_sampling_syncs_and_stops() -> None:
    _, hub = build_app(make_settings())
    with WebSocketMetrics(hub) as metrics:
        async with metrics.sampling(interval=0.01):
            pass
        with pytest.raises(ValueError, match="positive"):
            async with metrics.sampling(interval=0):
                pass


# -- multiprocess mode and the optional extra (fresh interpreters) ---------------------

MULTIPROCESS_SCRIPT = """
import asyncio
from tempest_ws import WebSocketHub
from tempest_ws.metrics import WebSocketMetrics, multiprocess_mode

assert multiprocess_mode()
with WebSocketMetrics(WebSocketHub()) as metrics:
    from tempest_ws import WebSocketHub, jwt_bearer_resolver, make_websocket_router
    from tempest_ws.observe import _audit
    _audit.security_event("heartbeat_timeout", "c1", "silent")
    print(metrics.render()[0].decode())
"""


def _python(script: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_multiprocess_mode_merges_worker_files(tmp_path: Path) -> None:
    for _ in range(2):  # two "workers", one after the other, sharing the directory
        text = _python(MULTIPROCESS_SCRIPT, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    samples = parse(text)
    assert value(samples, "tempest_ws_heartbeat_timeouts_total") == 2
    assert value(samples, "tempest_ws_connections_open") == 0


def test_missing_extra_names_it() -> None:
    script = """
import sys
sys.modules["prometheus_client"] = None
import tempest_ws, tempest_ws.metrics
from tempest_ws.exceptions import MissingDependencyError
try:
    tempest_ws.metrics.WebSocketMetrics(tempest_ws.WebSocketHub())
except MissingDependencyError as exc:
    print(exc.extra)
"""
    assert _python(script).strip() == "metrics"


def test_importing_tempest_ws_does_not_import_prometheus() -> None:
    script = "import sys, tempest_ws; print('prometheus_client' in sys.modules)"
    assert _python(script).strip() == "False"
