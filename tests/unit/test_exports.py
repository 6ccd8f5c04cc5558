"""The public surface holds together: every exported name exists, is the object its
defining module holds, and has a docstring; the stable re-export modules export exactly
what their folder module does; every import the docs show works, from a public path.

``__version__`` and other dunder names are exempt from the docstring rule.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

import pytest

from tests.helpers.public_api import DocumentedImport, documented_imports, module_assignments

PACKAGES = [
    "tempest_ws",
    "tempest_ws.asyncapi",
    "tempest_ws.backplane",
    "tempest_ws.client",
    "tempest_ws.exceptions",
    "tempest_ws.history",
    "tempest_ws.hub",
    "tempest_ws.router",
    "tempest_ws.settings",
    "tempest_ws.testing",
]
"""The public packages and top-level modules an application imports from."""

REEXPORTS = {
    "tempest_ws.codes": "tempest_ws.wire.codes",
    "tempest_ws.envelope": "tempest_ws.wire.envelope",
    "tempest_ws.messages": "tempest_ws.wire.messages",
    "tempest_ws.metrics": "tempest_ws.observe.metrics",
    "tempest_ws.realtime": "tempest_ws.router.realtime",
    "tempest_ws.server": "tempest_ws.router.server",
    "tempest_ws.shutdown": "tempest_ws.router.shutdown",
    "tempest_ws.tracing": "tempest_ws.observe.tracing",
}
"""The stable import paths kept for applications, and the folder module each mirrors."""

EXPORTS = [
    (module, name)
    for module in [*PACKAGES, *REEXPORTS, *REEXPORTS.values()]
    for name in importlib.import_module(module).__all__
]
IMPORTS = documented_imports()


def _defined_in(obj: Any, name: str) -> list[ModuleType]:
    """The modules of tempest_ws that define ``obj`` (a class or function by its
    ``__module__``; anything else by a module-level assignment of ``name``)."""
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return [importlib.import_module(obj.__module__)]
    return [importlib.import_module(module) for module, _ in module_assignments(name)]


@pytest.mark.parametrize(("module", "name"), EXPORTS, ids=[f"{m}:{n}" for m, n in EXPORTS])
def test_an_exported_name_is_the_defining_modules_object(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)  # AttributeError: exported, missing
    if name.startswith("__"):
        return
    homes = _defined_in(obj, name)
    assert homes, f"{module}.{name}: not defined anywhere in tempest_ws"
    assert all(home.__name__.split(".")[0] == "tempest_ws" for home in homes), homes
    own_name = obj.__name__ if inspect.isclass(obj) or inspect.isroutine(obj) else name
    assert any(getattr(home, own_name, None) is obj for home in homes), (
        f"{module}.{name} is not the object its defining module holds"
    )


@pytest.mark.parametrize(("module", "name"), EXPORTS, ids=[f"{m}:{n}" for m, n in EXPORTS])
def test_an_exported_name_has_a_docstring(module: str, name: str) -> None:
    if name.startswith("__"):
        return
    obj = getattr(importlib.import_module(module), name)
    if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj):
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        assert (doc or "").strip(), f"{module}.{name} has no docstring of its own"
        return
    # A constant or a type alias has no __doc__ of its own: wherever it is assigned, it
    # needs an attribute docstring (a string right after it) or a mention in that
    # module's docstring.
    assignments = module_assignments(name)
    assert assignments, f"cannot find where {name} is assigned"
    undocumented = [
        home
        for home, doc in assignments
        if not doc and name not in (importlib.import_module(home).__doc__ or "")
    ]
    assert undocumented == [], f"{module}.{name}: no attribute docstring where assigned"


@pytest.mark.parametrize("module", [*PACKAGES, *REEXPORTS, *REEXPORTS.values()])
def test_all_lists_each_name_once(module: str) -> None:
    names = importlib.import_module(module).__all__
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize(("stable", "home"), REEXPORTS.items())
def test_a_stable_path_exports_exactly_its_folder_module(stable: str, home: str) -> None:
    reexport, target = importlib.import_module(stable), importlib.import_module(home)
    assert sorted(reexport.__all__) == sorted(target.__all__)
    for name in target.__all__:
        assert getattr(reexport, name) is getattr(target, name), name


@pytest.mark.parametrize("documented", IMPORTS, ids=[i.where for i in IMPORTS])
def test_every_import_the_docs_show_works_from_a_public_path(documented: DocumentedImport) -> None:
    parts = documented.module.split(".")
    assert not [p for p in parts if p.startswith("_")], (
        f"{documented.where}: {documented.module} is private; import from a public path"
    )
    module = importlib.import_module(documented.module)
    for name in documented.names:
        assert not name.startswith("_"), f"{documented.where}: {name} is private"
        if not hasattr(module, name):  # a submodule: ``from tempest_ws import shutdown``
            importlib.import_module(f"{documented.module}.{name}")


def test_the_docs_show_imports_to_check() -> None:
    assert len(IMPORTS) > 20, IMPORTS
