"""The browser client's history positions, in real headless Chromium against real uvicorn.

The server is `HistoryTestServer`: the history wire
format (docs/history.md, "On the wire") built from ``tempest_ws.history``'s own pieces,
reached through a proxy that can drop every connection. The tests check what the client
does with it: it tracks the position of each subscribed topic, sends it back when it
resubscribes after a cut or an offline spell, gets each missed message once and in order
before ``recovery`` (``recovered: true``), reports ``recovered: false``, and resumes from
positions an application saved in ``localStorage``. Waits are bounded polls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tempest_ws.history import MemoryHistory
from tests.helpers.browser import (
    CLIENT_FORMS,
    FAST,
    Chromium,
    events,
    launch_chromium,
    make_client,
    open_page,
    wait_event,
    wait_js,
)
from tests.helpers.history_browser_app import HistoryTestServer
from tests.helpers.support import until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

WAIT = 30.0
"""Bound, in seconds, of every server-side wait."""

TOPIC = "chat:1"

WATCH = """
(name) => {
  const log = window.logs[name];
  const client = window.clients[name];
  log.seen = [];  // client.positions as each message listener saw it
  client.addEventListener("message", (e) => {
    if (e.detail.topic) log.seen.push(client.positions[e.detail.topic]?.offset ?? null);
  });
}
"""


@pytest.fixture(params=CLIENT_FORMS)
async def chromium(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Chromium]:
    """Chromium running the one-file client, then the ES modules (see CLIENT_FORMS)."""
    async with launch_chromium(tmp_path, client=request.param) as browser:
        yield browser


async def start(server: HistoryTestServer, chromium: Chromium, name: str = "c") -> Any:
    """A page with client ``name`` connected to ``server`` and subscribed to TOPIC."""
    page = await open_page(chromium, server.base)
    await make_client(page, name, url=server.ws_url, options=FAST)
    await page.evaluate(WATCH, name)
    await wait_event(page, name, "open")
    await page.evaluate("(n) => window.clients[n].subscribe('chat:1')", name)
    return page


async def chat(page: Any, name: str = "c", count: int = 0) -> list[dict[str, Any]]:
    """The ``chat.message`` envelopes client ``name`` got (waits for ``count`` first)."""
    if count:
        await wait_event(page, name, "message", "e.detail.type === 'chat.message'", count)
    return [
        e["detail"]
        for e in await events(page, name, "message")
        if e["detail"]["type"] == "chat.message"
    ]


async def positions(page: Any, name: str = "c") -> Any:
    return await page.evaluate("(n) => window.clients[n].positions", name)


async def publish(server: HistoryTestServer, *numbers: int) -> None:
    for n in numbers:
        await server.publish(TOPIC, "chat.message", {"n": n})


async def test_tracks_positions_and_resumes_after_an_abrupt_cut(chromium: Chromium) -> None:
    async with HistoryTestServer().running() as server:
        page = await start(server, chromium)
        # A first subscribe has nothing to resume: recovered false at offset 0.
        (first,) = await wait_event(page, "c", "recovery")
        epoch = first["detail"]["epoch"]
        assert first["detail"] == {
            "topic": TOPIC,
            "recovered": False,
            "replayed": 0,
            "offset": 0,
            "epoch": epoch,
        }
        assert server.subscribes == [{"topic": TOPIC}]
        assert await positions(page) == {TOPIC: {"offset": 0, "epoch": epoch}}

        await publish(server, 1, 2, 3)
        received = await chat(page, count=3)
        assert [(m["offset"], m["epoch"], m["topic"]) for m in received] == [
            (1, epoch, TOPIC),
            (2, epoch, TOPIC),
            (3, epoch, TOPIC),
        ]
        assert await positions(page) == {TOPIC: {"offset": 3, "epoch": epoch}}
        # Each message's position is stored after its listeners ran.
        assert await page.evaluate("() => window.logs.c.seen") == [0, 1, 2]

        # The node dies: no close frame. It stays unreachable while 4-6 are published.
        assert server.proxy is not None
        server.proxy.refusing = True
        assert server.proxy.cut() == 1
        await wait_event(page, "c", "close", "e.detail.code === 1006 && e.detail.willReconnect")
        await until(lambda: server.subscribers(TOPIC) == 0, WAIT)
        await wait_event(page, "c", "reconnecting", count=2)  # refused while we publish
        await publish(server, 4, 5, 6)
        server.proxy.refusing = False

        await wait_event(page, "c", "open", "e.detail.reconnected")
        (resumed,) = await wait_event(page, "c", "recovery", "e.detail.recovered")
        assert resumed["detail"] == {
            "topic": TOPIC,
            "recovered": True,
            "replayed": 3,
            "offset": 6,
            "epoch": epoch,
        }
        assert server.subscribes[1:] == [{"topic": TOPIC, "offset": 3, "epoch": epoch}]
        await publish(server, 7)
        received = await chat(page, count=7)
        assert [m["data"]["n"] for m in received] == [1, 2, 3, 4, 5, 6, 7]
        assert [m["offset"] for m in received] == [1, 2, 3, 4, 5, 6, 7]
        # The replay came before its recovery event, the live message after it.
        kinds = [
            e["detail"]["data"]["n"] if e["type"] == "message" else "recovery"
            for e in await events(page, "c")
            if e["type"] == "recovery" or e["detail"].get("type") == "chat.message"
        ]
        assert kinds == ["recovery", 1, 2, 3, 4, 5, 6, "recovery", 7]
        assert await positions(page) == {TOPIC: {"offset": 7, "epoch": epoch}}

        # Unsubscribing forgets the position; so a later subscribe starts afresh.
        await page.evaluate("() => window.clients.c.unsubscribe('chat:1')")
        assert await positions(page) == {}
        await page.evaluate("() => window.clients.c.close()")


async def test_offline_then_online_resumes_from_its_position(chromium: Chromium) -> None:
    # Offline Chromium holds a loopback WebSocket's frames instead of closing it; the
    # client notices through silence (hello promises 1.5 s), then resumes once online.
    async with HistoryTestServer(heartbeat=0.3).running() as server:
        page = await start(server, chromium)
        (first,) = await wait_event(page, "c", "recovery")
        epoch = first["detail"]["epoch"]
        await publish(server, 1, 2)
        await chat(page, count=2)

        await chromium.context.set_offline(True)
        await wait_event(page, "c", "close", "e.detail.code === 4408")
        await publish(server, 3, 4, 5)  # into the held socket, and into the history
        await wait_event(page, "c", "close", "e.detail.code === 1006")  # offline handshake
        await chromium.context.set_offline(False)

        (resumed,) = await wait_event(page, "c", "recovery", "e.detail.recovered")
        assert resumed["detail"] == {
            "topic": TOPIC,
            "recovered": True,
            "replayed": 3,
            "offset": 5,
            "epoch": epoch,
        }
        assert {"topic": TOPIC, "offset": 2, "epoch": epoch} in server.subscribes
        await publish(server, 6)
        received = await chat(page, count=6)
        assert [m["data"]["n"] for m in received] == [1, 2, 3, 4, 5, 6]
        assert await positions(page) == {TOPIC: {"offset": 6, "epoch": epoch}}
        await page.evaluate("() => window.clients.c.close()")


async def test_reports_recovered_false_for_a_lost_epoch_and_a_discontinuity(
    chromium: Chromium,
) -> None:
    async with HistoryTestServer().running() as server:
        page = await start(server, chromium)
        (first,) = await wait_event(page, "c", "recovery")
        old_epoch = first["detail"]["epoch"]
        await publish(server, 1, 2)
        await chat(page, count=2)

        # The node restarts with an empty history: every epoch changes.
        assert server.proxy is not None
        server.proxy.refusing = True
        server.proxy.cut()
        await until(lambda: server.subscribers(TOPIC) == 0, WAIT)
        server.history = MemoryHistory(server.policy)
        await publish(server, 3, 4)
        server.proxy.refusing = False

        lost = await wait_event(page, "c", "recovery", count=2)
        new_epoch = lost[1]["detail"]["epoch"]
        assert new_epoch != old_epoch
        assert lost[1]["detail"] == {
            "topic": TOPIC,
            "recovered": False,
            "replayed": 0,
            "offset": 2,
            "epoch": new_epoch,
        }
        assert server.subscribes[-1] == {"topic": TOPIC, "offset": 2, "epoch": old_epoch}
        assert await positions(page) == {TOPIC: {"offset": 2, "epoch": new_epoch}}
        # Messages 3 and 4 are not replayed: the application reloads instead.
        assert [m["data"]["n"] for m in await chat(page)] == [1, 2]

        # An unrequested notice of a discontinuity, then live messages go on.
        await server.notice(TOPIC)
        notice = await wait_event(page, "c", "recovery", count=3)
        assert notice[2]["detail"] == {
            "topic": TOPIC,
            "recovered": False,
            "replayed": 0,
            "offset": 2,
            "epoch": new_epoch,
        }
        await publish(server, 5)
        assert [m["data"]["n"] for m in await chat(page, count=3)] == [1, 2, 5]
        assert await positions(page) == {TOPIC: {"offset": 3, "epoch": new_epoch}}
        await page.evaluate("() => window.clients.c.close()")


async def test_ignores_malformed_positions(chromium: Chromium) -> None:
    async with HistoryTestServer().running() as server:
        page = await start(server, chromium)
        (first,) = await wait_event(page, "c", "recovery")
        epoch = first["detail"]["epoch"]
        await publish(server, 1)
        await chat(page, count=1)
        good = {"offset": 1, "epoch": epoch}
        bad_stamps: list[dict[str, Any]] = [
            {"topic": TOPIC, "offset": -1, "epoch": epoch},
            {"topic": TOPIC, "offset": 2.5, "epoch": epoch},
            {"topic": TOPIC, "offset": "3", "epoch": epoch},
            {"topic": TOPIC, "offset": True, "epoch": epoch},
            {"topic": TOPIC, "offset": 2**60, "epoch": epoch},
            {"topic": TOPIC, "offset": 4, "epoch": 7},
            {"topic": TOPIC, "offset": 4, "epoch": ""},
            {"topic": TOPIC, "offset": 4, "epoch": "e" * 65},
            {"topic": TOPIC, "offset": 4},
            {"topic": "", "offset": 4, "epoch": epoch},
            {"topic": "other", "offset": 4, "epoch": epoch},  # not subscribed
        ]
        for stamp in bad_stamps:
            frame = {"type": "odd", "data": {}, "request_id": None, **stamp}
            await server.send_raw(TOPIC, json.dumps(frame))
        bad_recovery = {"topic": TOPIC, "recovered": True, "replayed": 0, "offset": 9}
        await server.send_raw(
            TOPIC, json.dumps({"type": "recovery", "data": bad_recovery, "request_id": None})
        )
        # Each still reaches the application as a message; none moves the position.
        await wait_event(page, "c", "message", "e.detail.type === 'odd'", len(bad_stamps))
        warned = await wait_event(page, "c", "warning", "e.detail.kind === 'invalid-frame'")
        assert warned[0]["detail"]["message"] == "malformed recovery envelope"
        assert len(await events(page, "c", "recovery")) == 1
        assert await positions(page) == {TOPIC: good}
        await page.evaluate("() => window.clients.c.close()")


SEEDED = """
async ([name, url, options]) => {
  const saved = JSON.parse(localStorage.getItem("positions") ?? "{}");
  await window.makeClient(name, url, { ...options, positions: saved });
  return window.clients[name].positions;
}
"""


async def test_resumes_from_positions_saved_in_local_storage(chromium: Chromium) -> None:
    async with HistoryTestServer().running() as server:
        page = await start(server, chromium)
        (first,) = await wait_event(page, "c", "recovery")
        epoch = first["detail"]["epoch"]
        await publish(server, 1, 2)
        await chat(page, count=2)
        await page.evaluate(
            """() => {
              const saved = window.clients.c.positions;
              saved["chat:2"] = { offset: 5, epoch: "a-gone-epoch" };
              saved["bad"] = { offset: -1, epoch: "x" };
              saved["worse"] = "garbage";
              localStorage.setItem("positions", JSON.stringify(saved));
              window.clients.c.close();
            }"""
        )
        await page.close()
        await until(lambda: server.subscribers(TOPIC) == 0, WAIT)
        await publish(server, 3, 4)

        # A new page of the same origin: same localStorage, a fresh client.
        page = await open_page(chromium, server.base)
        seeded = await page.evaluate(SEEDED, ["d", server.ws_url, {"startClosed": True}])
        assert seeded == {
            TOPIC: {"offset": 2, "epoch": epoch},
            "chat:2": {"offset": 5, "epoch": "a-gone-epoch"},
        }
        await page.evaluate(
            """() => { const d = window.clients.d;
               d.subscribe("chat:1"); d.subscribe("chat:2"); d.reconnect(); }"""
        )
        found = await wait_event(page, "d", "recovery", count=2)
        by_topic = {e["detail"]["topic"]: e["detail"] for e in found}
        assert by_topic[TOPIC] == {
            "topic": TOPIC,
            "recovered": True,
            "replayed": 2,
            "offset": 4,
            "epoch": epoch,
        }
        assert by_topic["chat:2"]["recovered"] is False
        assert server.subscribes[-2:] == [
            {"topic": TOPIC, "offset": 2, "epoch": epoch},
            {"topic": "chat:2", "offset": 5, "epoch": "a-gone-epoch"},
        ]
        assert [m["data"]["n"] for m in await chat(page, "d")] == [3, 4]
        stored = await wait_js(page, "() => window.clients.d.positions")
        assert stored[TOPIC] == {"offset": 4, "epoch": epoch}
        await page.evaluate("() => window.clients.d.close()")
