"""The demo's screenshots can be made from the code as it is (``scripts/screenshots.py``)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.mark.timeout(120)
async def test_the_screenshot_script_shows_two_users_and_the_reconnect_badge(
    tmp_path: Path,
) -> None:
    spec = importlib.util.spec_from_file_location(
        "screenshots", ROOT / "scripts" / "screenshots.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "work").mkdir()
    (tmp_path / "img").mkdir()
    written = await module.make_screenshots(tmp_path / "img", tmp_path / "work")
    assert [p.name for p in written] == ["demo-chat.png", "demo-reconnecting.png"]
    for path in written:
        assert _png_size(path) == (1280, 640)
        assert path.stat().st_size > 20_000  # a rendered page, not a blank one
    for name in ("demo-chat.png", "demo-reconnecting.png"):
        assert (ROOT / "docs" / "img" / name).is_file(), f"docs/img/{name} is committed"
