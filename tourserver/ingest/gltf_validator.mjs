// Runs the Khronos glTF-Validator (npm "gltf-validator") on one file and prints its JSON report.
// External resources are read only from the asset's own folder: the validator's default
// loader would follow any URI, so we resolve and confine them ourselves.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(process.env.TOURSERVER_NODE_MODULES
  ? path.join(process.env.TOURSERVER_NODE_MODULES, "noop.js") : import.meta.url);
const validator = require("gltf-validator");

const file = process.argv[2];
const root = path.dirname(path.resolve(file));
const bytes = new Uint8Array(fs.readFileSync(file));

function loadExternal(uri) {
  const target = path.resolve(root, decodeURIComponent(uri));
  if (!target.startsWith(root + path.sep)) {
    return Promise.reject(new Error(`URI outside the asset folder: ${uri}`));
  }
  return fs.promises.readFile(target).then((b) => new Uint8Array(b));
}

validator
  .validateBytes(bytes, {
    uri: path.basename(file),
    maxIssues: 200,
    externalResourceFunction: loadExternal,
  })
  .then((report) => process.stdout.write(JSON.stringify(report)))
  .catch((err) => {
    process.stderr.write(`validator failed: ${err}\n`);
    process.exit(2);
  });
