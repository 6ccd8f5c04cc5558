"""The browser client resuming against the real hub: headless Chromium, two uvicorn
processes of ``examples/history.py`` and one real redis-server.

(a) A page subscribed on node A goes offline (``context.set_offline``), misses messages
published through node B, and node A is SIGKILLed meanwhile; back online, the client's
URL function moves it to node B, which replays every missed message once and in order,
then ``recovery{recovered: true}``, then live ones. (b) The example page
(``examples/history_static/index.html``) saves its lines and positions in
``localStorage`` when it is left, resumes from them on the next visit, and, after Redis
lost everything (``FLUSHALL``), gets ``recovered: false`` and reloads the room from the
history endpoint.

In this Chromium, ``set_offline(True)`` holds an open loopback WebSocket's frames instead
of closing it: the client notices through silence (the nodes promise a 2.5 s heartbeat
timeout). Every wait is a bounded poll.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.browser import (
    FAST,
    HARNESS,
    Chromium,
    events,
    wait_event,
    wait_js,
)
from tests.helpers.history_support import Nodes, history_nodes, post
from tests.helpers.scaleout_app import start_all
from tests.helpers.support import token

pytestmark = [pytest.mark.redis, pytest.mark.browser, pytest.mark.e2e]

BOUND = 15.0
"""Upper bound, in seconds, of an HTTP call; reached only when something is broken."""


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    # hello promises a 2.5 s silence deadline: an offline client notices it quickly.
    heartbeat = {"WS_HEARTBEAT_SECONDS": "0.5", "WS_HEARTBEAT_TIMEOUT_SECONDS": "2.5"}
    workdir = Path(tmp_path_factory.mktemp("browser-history-e2e"))
    with history_nodes(workdir, extra_env=heartbeat) as started:
        yield started


def room() -> tuple[str, str]:
    name = uuid.uuid4().hex[:8]
    return name, f"room:{name}"


ROTATING_CLIENT = """
async ([name, nodes, options]) => {
  // Each connect goes to the next node: after a node died, the client moves on.
  window.connects = [];
  const next = () => {
    const url = nodes[window.connects.length % nodes.length];
    window.connects.push(url);
    return url;
  };
  await window.makeClient(name, next, options);
}
"""


async def test_offline_while_its_node_dies_resumes_on_the_other_node(
    nodes: Nodes, chromium: Chromium
) -> None:
    a, b = nodes.apps
    name, topic = room()
    try:
        page = await chromium.new_page(a.base + "/healthz")  # an origin serving /ws/client.js
        await page.evaluate(HARNESS)
        options = {**FAST, "token": token("ann")}
        await page.evaluate(ROTATING_CLIENT, ["c", [a.ws, b.ws], options])
        await wait_event(page, "c", "open")
        assert await page.evaluate("() => window.connects") == [a.ws]
        await page.evaluate("(t) => window.clients.c.subscribe(t)", topic)
        (first,) = await wait_event(page, "c", "recovery")
        epoch = first["detail"]["epoch"]
        assert first["detail"] == {
            "topic": topic,
            "recovered": False,
            "replayed": 0,
            "offset": 0,
            "epoch": epoch,
        }
        await post(b, name, 1, 2)
        await wait_event(page, "c", "message", "e.detail.type === 'chat.message'", 2)

        await chromium.context.set_offline(True)
        await wait_event(page, "c", "close", "e.detail.code === 4408")
        await post(b, name, 3, 4, 5, 6, 7)  # missed: held in A's dead socket at most
        await wait_event(page, "c", "close", "e.detail.code === 1006")  # offline handshake
        assert a.process is not None
        a.process.kill()  # SIGKILL: node A is gone for good
        a.process.wait(timeout=10)
        await chromium.context.set_offline(False)

        (resumed,) = await wait_event(page, "c", "recovery", "e.detail.recovered")
        assert resumed["detail"] == {
            "topic": topic,
            "recovered": True,
            "replayed": 5,
            "offset": 7,
            "epoch": epoch,
        }
        assert await page.evaluate("() => window.connects.at(-1)") == b.ws
        await post(b, name, 8)
        await wait_event(page, "c", "message", "e.detail.type === 'chat.message'", 8)
        story = [
            "recovery" if e["type"] == "recovery" else e["detail"]["offset"]
            for e in await events(page, "c")
            if e["type"] == "recovery" or e["detail"].get("type") == "chat.message"
        ]
        assert story == ["recovery", 1, 2, 3, 4, 5, 6, 7, "recovery", 8]
        texts = [
            e["detail"]["data"]["text"]
            for e in await events(page, "c", "message")
            if e["detail"]["type"] == "chat.message"
        ]
        assert texts == [str(n) for n in range(1, 9)]
        positions = await page.evaluate("() => window.clients.c.positions")
        assert positions == {topic: {"offset": 8, "epoch": epoch}}
        await page.evaluate("() => window.clients.c.close()")
    finally:
        if a.process is None or a.process.poll() is not None:
            a.process = None
            start_all([a])  # back for the other tests


RECORD_RECOVERIES = """
// Runs before the page's own scripts: record every `recovery` event's detail.
window.recoveries = [];
const dispatch = EventTarget.prototype.dispatchEvent;
EventTarget.prototype.dispatchEvent = function (event) {
  if (event.type === "recovery") window.recoveries.push(event.detail);
  return dispatch.call(this, event);
};
"""

LINES = "() => [...document.querySelectorAll('#lines li')].map((li) => [li.value, li.textContent])"


async def wait_lines(page: Any, numbers: list[int], offsets: list[int]) -> None:
    """Wait until the page shows exactly messages ``numbers`` at ``offsets``."""
    lines = [[o, f"pub: {n}"] for n, o in zip(numbers, offsets, strict=True)]
    expected = json.dumps(lines, separators=(",", ":"))  # as JSON.stringify writes it
    await wait_js(page, f"(expected) => JSON.stringify(({LINES})()) === expected", expected)


RELOADING = "reloading: no continuous history from the saved position"


async def notes(page: Any, expected: list[str]) -> bool:
    """Wait until the page's log (``#log``) reads exactly ``expected``."""
    done: bool = await wait_js(
        page,
        "(expected) => JSON.stringify([...document.querySelectorAll('#log li')]"
        ".map((li) => li.textContent)) === JSON.stringify(expected)",
        expected,
    )
    return done


async def recoveries(page: Any, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await wait_js(
        page, f"() => window.recoveries.length >= {count} && window.recoveries"
    )
    return found


async def test_the_example_page_resumes_from_local_storage(
    nodes: Nodes, chromium: Chromium
) -> None:
    a, b = nodes.apps
    name, topic = room()
    url = f"{b.base}/#room={name}&token={token('ann')}"
    await chromium.context.add_init_script(RECORD_RECOVERIES)
    page = await chromium.new_page(url)

    # First visit: nothing saved, so recovered: false, and the page loads the (empty) room.
    (first,) = await recoveries(page, 1)
    assert (first["recovered"], first["offset"]) == (False, 0)
    await notes(page, [RELOADING, "reloaded: 0 message(s) from the server"])
    await post(a, name, 1, 2)
    await wait_lines(page, [1, 2], [1, 2])

    # Leave (the page saves), miss 3 and 4, come back: resumed from the saved position.
    await page.goto("about:blank")
    await post(a, name, 3, 4)
    await page.goto(url)
    saved = json.loads(
        await page.evaluate(f"() => localStorage.getItem('history-example:{topic}')")
    )
    assert saved["positions"] == {topic: {"offset": 2, "epoch": first["epoch"]}}
    (resumed,) = await recoveries(page, 1)
    assert resumed == {
        "topic": topic,
        "recovered": True,
        "replayed": 2,
        "offset": 4,
        "epoch": first["epoch"],
    }
    await wait_lines(page, [1, 2, 3, 4], [1, 2, 3, 4])
    await notes(page, ["resumed: 2 missed message(s) replayed"])

    # Redis loses everything while the page is away: its saved epoch is gone.
    await page.goto("about:blank")
    with nodes.redis.client() as redis:
        redis.flushall()
    await post(a, name, 5, 6)  # offsets 1 and 2 of a new epoch
    await page.goto(url)
    (lost,) = await recoveries(page, 1)
    assert lost["epoch"] > first["epoch"]
    assert lost == {
        "topic": topic,
        "recovered": False,
        "replayed": 0,
        "offset": 2,
        "epoch": lost["epoch"],
    }
    await notes(page, [RELOADING, "reloaded: 2 message(s) from the server"])
    await wait_lines(page, [5, 6], [1, 2])  # from /rooms/{name}/history
    await post(a, name, 7)
    await wait_lines(page, [5, 6, 7], [1, 2, 3])
