"""The page of ``examples/realtime.py`` in real headless Chromium: two users in two tabs.

What ``docs/realtime.md`` shows the browser doing: log in, subscribe, ``presence.get``,
``presence.join`` / ``presence.leave`` updating the member list, a typing indicator,
``chat.send`` as a request, and read receipts coming back. Waits are bounded polls.
"""

from __future__ import annotations

from typing import Any

import pytest

from examples import realtime
from tempest_ws.testing import serve
from tests.helpers.browser import Chromium, wait_js
from tests.helpers.support import make_settings

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


async def log_in(page: Any, name: str) -> None:
    await page.fill("#name", name)
    await page.click("#go")
    await wait_js(page, "() => !document.getElementById('text').disabled")


def text_of(element_id: str) -> str:
    return f"() => document.getElementById('{element_id}').textContent"


def text_is(element_id: str, value: str) -> str:
    return f"() => document.getElementById('{element_id}').textContent === '{value}'"


async def test_two_users_see_presence_typing_lines_and_receipts(chromium: Chromium) -> None:
    settings = make_settings()
    async with serve(realtime.create_app(settings), settings=settings) as base:
        ann = await chromium.new_page(base + "/")
        await log_in(ann, "ann")
        assert await ann.evaluate(text_of("members")) == "ann"

        bob = await chromium.new_page(base + "/")
        await log_in(bob, "bob")
        await wait_js(ann, text_is("members", "ann, bob"))  # presence.join
        assert await bob.evaluate(text_of("members")) == "ann, bob"  # presence.get

        await bob.fill("#text", "hello")  # an input event: one typing envelope
        await wait_js(ann, text_is("typing", "bob is typing..."))
        assert await bob.evaluate(text_of("typing")) == ""  # never to the sender

        await bob.press("#text", "Enter")  # chat.send as a request, then typing: false
        await wait_js(
            ann, "() => document.querySelector('#lines li')?.textContent === 'bob: hello'"
        )
        # ann's page sent a receipt: bob's line gets its title from the relayed receipt
        await wait_js(bob, "() => document.querySelector('#lines li')?.title === 'read by ann'")
        await wait_js(ann, text_is("typing", ""))

        await bob.close()
        await wait_js(ann, text_is("members", "ann"))  # presence.leave
