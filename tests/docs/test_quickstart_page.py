"""The quick start's own app (``docs_src/quickstart.py``): its page in real Chromium,
its closed topics and its validated input over a real socket."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from websockets.asyncio.client import connect

from tempest_ws.testing import serve
from tests.helpers.browser import Chromium
from tests.helpers.support import SECRET, token

pytestmark = pytest.mark.e2e


@pytest.fixture
def quickstart(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The module as ``tempest-ws run app:app`` imports it: settings from the environment."""
    monkeypatch.setenv("WS_JWT_SECRET", SECRET)
    sys.modules.pop("docs_src.quickstart", None)
    yield importlib.import_module("docs_src.quickstart")
    sys.modules.pop("docs_src.quickstart", None)


async def _log_shows(page: object, text: str) -> None:
    await page.get_by_text(text).first.wait_for()  # type: ignore[attr-defined]


@pytest.mark.browser
async def test_two_pages_chat_in_the_lobby(quickstart: ModuleType, chromium: Chromium) -> None:
    async with serve(quickstart.app, settings=quickstart.settings) as base:
        ann = await chromium.new_page(f"{base}/#token={token('ann')}")
        bob = await chromium.new_page(f"{base}/#token={token('bob')}")
        for page in (ann, bob):
            await _log_shows(page, "joined room:lobby")
        await ann.fill("#text", "hello from the quick start")
        await ann.click("button")
        for page in (ann, bob):
            await _log_shows(page, "ann: hello from the quick start")
        lost = await chromium.new_page(f"{base}/")
        await _log_shows(lost, "open this page as /#token=")


async def test_topics_are_closed_and_input_is_checked(quickstart: ModuleType) -> None:
    async with serve(quickstart.app, settings=quickstart.settings) as base:
        url = base.replace("http://", "ws://") + "/ws"
        async with connect(url, subprotocols=["bearer", token("bob")]) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"

            async def ask(frame: dict[str, object]) -> dict[str, object]:
                await ws.send(json.dumps(frame))
                while True:
                    answer: dict[str, object] = json.loads(await ws.recv())
                    if answer["type"] in ("ack", "error"):
                        return answer

            for topic in ("room:staff", "inbox:ann", "anything"):
                refused = await ask(
                    {"type": "subscribe", "data": {"topic": topic}, "request_id": topic}
                )
                assert refused["type"] == "error", topic
                assert refused["data"]["code"] == "forbidden"  # type: ignore[index]
            assert (
                await ask({"type": "subscribe", "data": {"topic": "inbox:bob"}, "request_id": "i"})
            )["type"] == "ack"
            for data, code in (
                ({"room": "lobby", "text": "hi"}, "not_subscribed"),
                ({"room": "lobby"}, "invalid_data"),
                ([1, 2], "invalid_data"),
            ):
                answer = await ask({"type": "chat.send", "data": data, "request_id": code})
                assert answer["data"]["code"] == code  # type: ignore[index]
            answer = await ask({"type": "nope", "data": {}, "request_id": "n"})
            assert answer["data"]["code"] == "unknown_type"  # type: ignore[index]
            assert ws.close_code is None  # still open: answers, not closes
