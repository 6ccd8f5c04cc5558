"""The public surface of ``tempest-ws.js`` is declared in its ``.d.ts`` and documented.

Node imports the module (no browser needed) and lists its exports, the keys of
``DEFAULT_OPTIONS`` and the public members of ``TempestWS``; each must appear in
``tempest-ws.d.ts``, and each event the module emits in its ``TempestWSEventMap`` and in
the events table of ``docs/browser-client.md``. No TypeScript compiler is involved: this
catches a name added to one file and forgotten in the other, not a wrong type.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.helpers.support import require_tool

ROOT = Path(__file__).parents[2]
STATIC = ROOT / "tempest_ws" / "static"

LIST_SURFACE = """
const m = await import(process.argv[1]);
const members = Object.getOwnPropertyNames(m.TempestWS.prototype).filter((n) => n !== "constructor");
console.log(JSON.stringify({ exports: Object.keys(m), options: Object.keys(m.DEFAULT_OPTIONS), members }));
"""


def js_surface() -> dict[str, list[str]]:
    node = require_tool("node")
    module = (STATIC / "tempest-ws.js").as_uri()
    done = subprocess.run(
        [node, "--input-type=module", "-e", LIST_SURFACE, module],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    surface: dict[str, list[str]] = json.loads(done.stdout)
    return surface


def test_dts_declares_every_export_option_and_member() -> None:
    surface = js_surface()
    dts = (STATIC / "tempest-ws.d.ts").read_text()
    for name in surface["exports"]:
        if name != "default":
            assert re.search(rf"export declare (const|function|class) {name}\b", dts), name
    assert "export default TempestWS;" in dts
    options = dts.split("export interface TempestWSOptions {", 1)[1].split("\n}", 1)[0]
    for option in surface["options"]:
        assert re.search(rf"^  {option}\?:", options, re.MULTILINE), option
    declared = dts.split("export declare class TempestWS extends EventTarget {", 1)[1]
    for member in surface["members"]:
        assert re.search(rf"^  (readonly )?{member}\b", declared, re.MULTILINE), member


def test_every_emitted_event_is_typed_and_documented() -> None:
    source = (STATIC / "tempest-ws.js").read_text()
    emitted = set(re.findall(r'#emit\("([a-z]+)"', source)) | {"message"}
    assert {"tokenrefresh", "subscribeerror"} <= emitted
    dts = (STATIC / "tempest-ws.d.ts").read_text()
    event_map = dts.split("export interface TempestWSEventMap {", 1)[1].split("\n}", 1)[0]
    docs = (ROOT / "docs" / "browser-client.md").read_text()
    table = docs.split("## Events", 1)[1].split("\n## ", 1)[0]
    for event in emitted:
        assert re.search(rf"^  {event}: CustomEvent<", event_map, re.MULTILINE), event
        assert f"| `{event}` |" in table, event
