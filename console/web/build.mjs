// Builds the console into ../dist (or the directory given as the first argument):
// app.js and app.css bundled and minified by esbuild, index.html copied, and
// SOURCES.sha256, the digest of the sources the bundle was built from (console_test.go
// checks it against the sources, so an edit without a rebuild fails the tests).
// `make console` runs it after `npm ci`.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, copyFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const here = import.meta.dirname;
const out = resolve(process.argv[2] || join(here, "..", "dist"));
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { app: join(here, "src", "main.js") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "none",
  outdir: out,
  logLevel: "warning",
});
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
writeFileSync(join(out, "SOURCES.sha256"), sourcesDigest() + "\n");

// sourcesDigest is the SHA-256 over package-lock.json, build.mjs and every file of src/,
// each as "path\0bytes\0", by path: console_test.go computes the same.
function sourcesDigest() {
  const files = ["package-lock.json", "build.mjs", ...readdirSync(join(here, "src")).map((f) => "src/" + f)].sort();
  const h = createHash("sha256");
  for (const f of files) {
    h.update(f + "\0");
    h.update(readFileSync(join(here, f)));
    h.update("\0");
  }
  return h.digest("hex");
}
