"""The folder table of docs/architecture.md names every folder and top-level module with its job."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tempest_ws"
ROW = re.compile(r"^\| `([^`]+)` \| (.*) \|$")


def _first_line(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path} has no module docstring"
    return docstring.strip().splitlines()[0]


def _places() -> dict[str, str]:
    found = {
        f"{init.parent.relative_to(PACKAGE).as_posix()}/": _first_line(init)
        for init in PACKAGE.rglob("*/__init__.py")
    }
    found.update({path.name: _first_line(path) for path in PACKAGE.glob("*.py")})
    return found


def test_every_module_has_a_docstring() -> None:
    for path in PACKAGE.rglob("*.py"):
        _first_line(path)


def test_folder_table_matches_the_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = {m[1]: m[2] for line in text.splitlines() if (m := ROW.match(line))}
    assert table == _places()


def test_the_page_names_only_modules_that_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:[a-z]+/)+_?[a-z_]+\.py)\b", text))
    assert named, "the page names no module"
    assert sorted(n for n in named if not (PACKAGE / n).is_file()) == []


def test_the_folder_picture_names_every_folder() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    picture = text.split("```")[1]
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert sorted(f for f in folders if f"  {f}/" not in picture) == []
