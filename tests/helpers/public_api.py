"""Where tempest_ws's public names come from, and the import lines its docs show.

`module_assignments()` finds the module-level assignments of a name in the package,
with the attribute docstring that follows each. `documented_imports()` collects every
``from tempest_ws... import ...`` (and ``import tempest_ws...``) that a reader of the
docs sees: in the Python blocks of ``docs/*.md`` and ``README.md``, and in the files
the pages include with ``--8<--``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import tempest_ws

PACKAGE = Path(tempest_ws.__file__).resolve().parent
ROOT = PACKAGE.parent
_BLOCK = re.compile(r"^```(?:python|py)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INCLUDE = re.compile(r'--8<-- "([^":]+\.py)')


def module_assignments(name: str) -> list[tuple[str, str | None]]:
    """``(module, attribute docstring or None)`` for each module-level ``name = ...``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("tempest_ws", *path.relative_to(PACKAGE).with_suffix("").parts))
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for node, following in zip(body, [*body[1:], None], strict=True):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
                continue
            doc = None
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                doc = following.value.value
            found.append((module.removesuffix(".__init__"), doc))
    return found


@dataclass(frozen=True)
class DocumentedImport:
    """One import of tempest_ws a reader of the docs sees: ``module`` and ``names``
    (empty for ``import module``), and where (``file:line``)."""

    module: str
    names: tuple[str, ...]
    where: str


def _imports_in(source: str, where: str, first_line: int = 1) -> list[DocumentedImport]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a fragment, not a program: no import to check in it
        return []
    found = []
    for node in ast.walk(tree):
        line = f"{where}:{first_line + getattr(node, 'lineno', 1) - 1}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "tempest_ws":
                names = tuple(alias.name for alias in node.names)
                found.append(DocumentedImport(node.module, names, line))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tempest_ws":
                    found.append(DocumentedImport(alias.name, (), line))
    return found


def documented_imports() -> list[DocumentedImport]:
    """Every import of tempest_ws in the docs' Python blocks and included Python files."""
    pages = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    found: list[DocumentedImport] = []
    included: set[str] = set()
    for page in pages:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(ROOT).as_posix()
        for block in _BLOCK.finditer(text):
            first_line = text.count("\n", 0, block.start(1)) + 1
            found += _imports_in(block.group(1), name, first_line)
        included.update(_INCLUDE.findall(text))
    for path in sorted(included):
        if path.startswith("tempest_ws/"):  # the package's own source, shown as it is
            continue
        found += _imports_in((ROOT / path).read_text(encoding="utf-8"), path)
    return found
