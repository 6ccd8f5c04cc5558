"""The house rules on who imports whom, read from the source with ``ast``.

The Python client is a separate program: it shares only the wire format (``wire/``) and
the package's top-level modules with the server, never the server's folders. The hub
knows nothing of the router (nor of HTTP), and the backplane, which moves frames between
processes, nothing of the hub or the router.
Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tempest_ws

PACKAGE = Path(tempest_ws.__file__).resolve().parent


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, relative ones resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """``file: module`` for each import under ``folder`` of a forbidden package."""
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        module = ".".join(("tempest_ws", *path.relative_to(PACKAGE).with_suffix("").parts))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for name in sorted(imported_modules(path.read_text(encoding="utf-8"), package)):
            if any(name == f or name.startswith(f"{f}.") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE)}: {name}")
    return found


def test_the_client_imports_nothing_of_the_server() -> None:
    server = ("tempest_ws.router", "tempest_ws.hub", "tempest_ws.backplane", "tempest_ws.history")
    assert violations("client", server) == []


def test_the_hub_imports_nothing_of_the_router() -> None:
    assert violations("hub", ("tempest_ws.router",)) == []


def test_the_backplane_imports_neither_the_hub_nor_the_router() -> None:
    assert violations("backplane", ("tempest_ws.hub", "tempest_ws.router")) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tempest_ws.router.auth import X", {"tempest_ws.router.auth"}),
        ("import tempest_ws.hub", {"tempest_ws.hub"}),
        ("from ..router import auth", {"tempest_ws.router", "tempest_ws.router.auth"}),
        ("def f():\n    from tempest_ws.history import wire", {"tempest_ws.history"}),
        ("if TYPE_CHECKING:\n    from tempest_ws.backplane import base", {"tempest_ws.backplane"}),
    ],
)
def test_every_kind_of_import_is_seen(source: str, expected: set[str]) -> None:
    assert expected <= imported_modules(source, "tempest_ws.client")
