"""``docs/security.md``: every test its tables name exists, and every security test is named.

Each row of the attack tables ends with the test that replays the attack
(`` `tests/...py::test_name` ``). A renamed or deleted test must not leave a row pointing
nowhere, and a test added to ``tests/security/`` must get its row.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_named_test_exists() -> None:
    references = REFERENCE.findall(PAGE.read_text(encoding="utf-8"))
    assert references, "docs/security.md names no tests"
    missing = [
        f"{path}::{name}"
        for path, name in references
        if not (ROOT / path).is_file() or name not in functions_in(ROOT / path)
    ]
    assert missing == []


def test_every_security_test_has_a_row() -> None:
    named = set(REFERENCE.findall(PAGE.read_text(encoding="utf-8")))
    unnamed = [
        f"{path.relative_to(ROOT)}::{name}"
        for path in sorted((ROOT / "tests" / "security").glob("test_*.py"))
        for name in sorted(functions_in(path))
        if (str(path.relative_to(ROOT)), name) not in named
    ]
    assert unnamed == []
