"""The module table of docs/architecture.md names every module with its docstring's first line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tempest_ws"
ROW = re.compile(r"^\| `([^`]+\.py)` \| (.*) \|$")


def _summaries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring, f"{path} has no module docstring"
        found[path.relative_to(PACKAGE).as_posix()] = docstring.strip().splitlines()[0]
    return found


def test_module_table_matches_the_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = {m[1]: m[2] for line in text.splitlines() if (m := ROW.match(line))}
    assert table == _summaries()
