"""Importing tempest_ws stays cheap: optional dependencies load only when used."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_pull_optional_dependencies() -> None:
    code = (
        "import sys, tempest_ws; "
        "heavy = [m for m in ('redis', 'uvicorn', 'websockets', 'orjson_unused') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_typed_marker_ships() -> None:
    from importlib import resources

    assert resources.files("tempest_ws").joinpath("py.typed").is_file()
