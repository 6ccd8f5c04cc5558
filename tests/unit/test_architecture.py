"""The package's shape, read from its source with ``ast``: no import circles, no module
over 400 lines, and the house rules on who imports whom.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions. The
Python client is a separate program: it shares only the wire format (``wire/``) and the
package's top-level modules with the server, never the server's folders. The hub knows
nothing of the router (nor of HTTP), and the backplane, which moves frames between
processes, nothing of the hub or the router.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import tempest_ws

PACKAGE = Path(tempest_ws.__file__).resolve().parent
MAX_LINES = 400


def module_name(path: Path) -> str:
    """``tempest_ws.hub._hub`` for ``tempest_ws/hub/_hub.py``; a package is its folder."""
    parts = ("tempest_ws", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, relative ones resolved;
    ``from a import b`` gives both ``a`` and ``a.b`` (``b`` may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_of(module: str) -> set[str]:
    """The modules of tempest_ws that ``module`` imports (the nearest one that exists)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges = set()
    for name in imported_modules(path.read_text(encoding="utf-8"), package):
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            edges.add(name)
    return edges


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(folder: str, forbidden: tuple[str, ...]) -> Iterator[str]:
    """``module: import`` for each import under ``folder`` of a forbidden package."""
    for module, path in MODULES.items():
        if not path.is_relative_to(PACKAGE / folder):
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for name in sorted(imported_modules(path.read_text(encoding="utf-8"), package)):
            if any(name == f or name.startswith(f"{f}.") for f in forbidden):
                yield f"{module}: {name}"


def test_the_package_has_no_import_circles() -> None:
    assert circles({module: imports_of(module) for module in MODULES}) == []


def test_no_module_is_over_400_lines() -> None:
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_the_client_imports_nothing_of_the_server() -> None:
    server = ("tempest_ws.router", "tempest_ws.hub", "tempest_ws.backplane", "tempest_ws.history")
    assert list(violations("client", server)) == []


def test_the_hub_imports_nothing_of_the_router() -> None:
    assert list(violations("hub", ("tempest_ws.router",))) == []


def test_the_backplane_imports_neither_the_hub_nor_the_router() -> None:
    assert list(violations("backplane", ("tempest_ws.hub", "tempest_ws.router"))) == []


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


def test_a_circle_is_found_through_any_number_of_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_the_package() -> None:
    graph = {module: imports_of(module) for module in MODULES}
    assert "tempest_ws.wire.envelope" in graph["tempest_ws.router.realtime"]
    assert len(MODULES) > 100
