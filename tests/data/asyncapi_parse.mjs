// Parse an AsyncAPI document with the official parser and print its diagnostics.
// Usage (see README.md): node asyncapi_parse.mjs document.json
// Exit status 1 when the parser reports an error (severity 0) or cannot parse.
import fs from "node:fs";
import { Parser } from "@asyncapi/parser";

const { document, diagnostics } = await new Parser().parse(
  fs.readFileSync(process.argv[2], "utf8"),
);
const names = ["error", "warning", "info", "hint"];
for (const d of diagnostics) {
  console.log(`${names[d.severity]} ${d.code} ${JSON.stringify(d.path)} ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === 0).length;
console.log(document ? `parsed: ${document.allMessages().length} messages` : "not parsed");
process.exit(document && errors === 0 ? 0 : 1);
