#!/usr/bin/env node
// The build `npm ci` runs (package.json "prepare"): bin/main.ts and everything it loads, bundled
// by esbuild into dist/, one chunk per command so `ca-a2a token` still loads little. Running
// the build instead of the sources through tsx saves tsx's loader thread (about 35 MB resident)
// and half a second of start per process.
// dist/inputs.json lists the sources, so bin/ca-a2a.js can tell a stale build and run the
// sources instead. `node bin/build.js DIR` builds into DIR (a folder directly under the root).
import { build } from 'esbuild';
import { rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const outdir = `${root}${process.argv[2] ?? 'dist'}`;

const EXTERNAL = ['@electric-sql/pglite', 'pino', 'thread-stream', 'oidc-provider', '@aws-sdk/*', '@smithy/*', 'unpdf', 'pg-native', '@modelcontextprotocol/sdk'];

rmSync(outdir, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  // The PDF reader's worker thread loads its own file: dist/pdf-worker.js, beside the chunks.
  entryPoints: { main: 'bin/main.ts', 'pdf-worker': 'agents/extractor/pdf-worker.ts' },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Dependencies are bundled too: resolving and reading ~500 small files of node_modules was most
  // of a sidecar's start. Kept external: packages that load files beside themselves at run time
  // (PGlite's WebAssembly, pino's worker transports, pdf.js) or that only the dev issuer and the
  // gateway use, whose start time does not matter as much.
  external: EXTERNAL,
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning',
});
const inputs = Object.keys(result.metafile.inputs).filter((file) => !file.startsWith('node_modules/'));
writeFileSync(`${outdir}/inputs.json`, `${JSON.stringify(inputs)}\n`);
