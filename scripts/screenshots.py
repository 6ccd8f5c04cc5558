"""Screenshots of the chat demo for the README and the docs, made in headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/img]

Serves ``examples/chat`` on a free loopback port, opens two users side by side in one
page (two frames), has them chat, then drops the connection of one of them while its
login endpoint is unreachable so the reconnect badge shows. Writes ``demo-chat.png`` and
``demo-reconnecting.png``. ``tests/docs/test_screenshots.py`` runs it, so the pictures can
always be made again from the code as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file from anywhere
    sys.path.insert(0, str(ROOT))

from examples.chat.app import create_app  # noqa: E402
from tempest_ws import CloseCode, WebSocketSettings  # noqa: E402
from tempest_ws.testing import serve  # noqa: E402
from tests.helpers.browser import launch_chromium  # noqa: E402

SIZE = {"width": 1280, "height": 640}
FRAMES = """<!doctype html><meta charset=utf-8><title>tempest_ws demo</title>
<style>body{margin:0;display:flex;gap:8px;background:#cfd6e0}
iframe{flex:1;height:632px;border:0;background:#fff}</style>
<iframe name=alice src="{base}/"></iframe><iframe name=bob src="{base}/"></iframe>"""


async def _sign_in(frame: Any, name: str) -> None:
    await frame.get_by_test_id("name").fill(name)
    await frame.get_by_test_id("login-form").locator("button").click()
    await frame.wait_for_function(
        "() => document.querySelector('#status').dataset.state === 'open'", polling=50
    )


async def _say(frame: Any, text: str) -> None:
    await frame.get_by_test_id("text").fill(text)
    await frame.get_by_test_id("send-form").locator("button").click()


async def make_screenshots(out: Path, workdir: Path) -> list[Path]:
    """Write the demo's screenshots into the directory ``out``; returns their paths."""
    settings = WebSocketSettings(_env_file=None, WS_ALLOW_QUERY_TOKEN=False)  # type: ignore[call-arg]
    app = create_app(settings)
    written: list[Path] = []
    async with serve(app, settings=app.state.settings) as base, launch_chromium(workdir) as browser:
        page = await browser.new_page()
        await page.set_viewport_size(SIZE)
        await page.set_content(FRAMES.replace("{base}", base))
        alice, bob = page.frame(name="alice"), page.frame(name="bob")
        await alice.wait_for_load_state()
        await bob.wait_for_load_state()
        await _sign_in(alice, "alice")
        await _sign_in(bob, "bob")
        await bob.get_by_test_id("members").get_by_text("alice", exact=True).wait_for()
        for frame, text, other in (
            (alice, "hi bob! the release is green", bob),
            (bob, "great, shipping it now", alice),
            (alice, "thanks!", bob),
        ):
            await _say(frame, text)
            await other.get_by_test_id("log").get_by_text(text).wait_for()
        written.append(out / "demo-chat.png")
        await page.screenshot(path=str(written[-1]))

        await page.route("**/api/login", lambda route: route.abort())
        await app.state.hub.disconnect_user("bob", code=CloseCode.SERVICE_RESTART)
        await bob.wait_for_function(
            "() => document.querySelector('#status').dataset.state === 'reconnecting'",
            polling=50,
        )
        await bob.get_by_test_id("log").get_by_text("the server is not reachable").first.wait_for()
        written.append(out / "demo-reconnecting.png")
        await page.screenshot(path=str(written[-1]))
        await page.unroute("**/api/login")
        await bob.get_by_test_id("log").get_by_text("reconnected", exact=True).wait_for()
    return written


def main() -> None:
    """Parse ``--out`` and make the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as workdir:
        for path in asyncio.run(make_screenshots(args.out, Path(workdir))):
            sys.stderr.write(f"wrote {path}\n")


if __name__ == "__main__":
    main()
