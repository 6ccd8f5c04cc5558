// The browser client's modules implement what tempest-ws.d.ts declares.
//
// `tsc --noEmit -p tsconfig.json` (run by scripts/test.sh) checks every module under
// tempest_ws/static/client/ with its JSDoc types in strict mode, then this file: each
// declared export must accept the implementation's (same names, compatible types), so a
// declaration the code does not honour fails the build. Nothing here runs.

import * as declared from "../../tempest_ws/static/tempest-ws.js";
import * as modules from "../../tempest_ws/static/client/tempest-ws.js";

// Every declared export exists in the modules with a type assignable to the declaration.
const implemented: typeof declared = modules;

// The class: its constructor, and an instance, satisfy the declared class.
const Client: typeof declared.TempestWS = modules.TempestWS;
const client: declared.TempestWS = new modules.TempestWS("/ws");
const options: declared.TempestWSOptions = modules.DEFAULT_OPTIONS;

// The modules declare no export the .d.ts lacks.
type Extra = Exclude<keyof typeof modules, keyof typeof declared>;
const noExtra: [Extra] extends [never] ? true : Extra = true;

export { Client, client, implemented, noExtra, options };
