"""``tempest_ws/static/tempest-ws.js`` is the build of the modules in ``static/client/``.

The one file the router serves at ``{path}/client.js`` is committed; ``scripts/build_client.py``
makes it from the modules. These tests rebuild it and compare, byte for byte, and check
that the build refuses what it cannot join safely (a name declared twice, an import
circle, a renamed import), instead of writing a file that would behave differently.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[2]
STATIC = ROOT / "tempest_ws" / "static"


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_client", ROOT / "scripts" / "build_client.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_file_equals_a_fresh_build() -> None:
    build = load_build()
    built = build.build()
    assert (STATIC / "tempest-ws.js").read_text(encoding="utf-8") == built, (
        "tempest_ws/static/tempest-ws.js is stale: run python3 scripts/build_client.py"
    )
    assert build.build() == built  # deterministic
    assert build.main(["--check"]) == 0


def test_the_file_declares_every_module_once_and_exports_what_the_entry_exports() -> None:
    built = (STATIC / "tempest-ws.js").read_text(encoding="utf-8")
    assert not re.search(r"^import\b", built, re.MULTILINE)
    entry = (STATIC / "client" / "tempest-ws.js").read_text(encoding="utf-8")
    reexported = re.findall(r"^export \{([^}]*)\} from", entry, re.MULTILINE)
    names = {name.strip() for group in reexported for name in group.split(",")} | {"TempestWS"}
    exported = set(re.findall(r"^export (?:const|class|function) (\w+)", built, re.MULTILINE))
    assert exported == names
    assert built.endswith("export default TempestWS;\n")
    for module in sorted((STATIC / "client").glob("*.js")):
        first_line = module.read_text(encoding="utf-8").split("\n", 1)[0]
        if module.name != "tempest-ws.js":
            assert built.count(first_line + "\n") == 1, module.name


def write_modules(folder: Path, modules: dict[str, str]) -> Path:
    folder.mkdir()
    entry = '/** The entry. */\nimport { a } from "./a.js";\nexport class TempestWS {}\nexport default TempestWS;\n'
    for name, source in {"tempest-ws.js": entry, **modules}.items():
        (folder / name).write_text(source, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        ({"a.js": "export const a = 1;\nconst TempestWS = 2;\n"}, "TempestWS declared in"),
        (
            {
                "a.js": 'import { b } from "./b.js";\nexport const a = 1;\n',
                "b.js": 'import { a } from "./a.js";\nexport const b = 1;\n',
            },
            "import circle",
        ),
        (
            {
                "a.js": 'import { b as c } from "./b.js";\nexport const a = c;\n',
                "b.js": "export const b = 1;\n",
            },
            "only plain names",
        ),
        ({"a.js": "export const z = 1;\n"}, "imports a from a.js: not declared there"),
        (
            {"a.js": "export const a = 1;\n", "b.js": "export const b = 1;\n"},
            "modules no one imports",
        ),
        (
            {"a.js": 'export const a = 1;\nexport * from "./x.js";\n'},
            "an export the build does not handle",
        ),
    ],
)
def test_the_build_refuses_what_it_cannot_join(
    tmp_path: Path, modules: dict[str, str], message: str
) -> None:
    build = load_build()
    with pytest.raises(build.BuildError, match=message):
        build.build(write_modules(tmp_path / "client", modules))
