import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

// Operators script these commands: stdout is the result only, a diagnostic goes to stderr.
describe('usage: stdout for what was asked, stderr for a usage error (exit 2)', () => {
  for (const prefix of [[], ['policy']]) {
    const name = ['ca-a2a', ...prefix].join(' ');
    it(`${name} without a command: exit 2, the usage on stderr, nothing on stdout`, async () => {
      const { code, stdout, stderr } = await run(prefix);
      assert.equal(code, 2);
      assert.equal(stdout, '');
      assert.match(stderr, new RegExp(`usage: ${name} <command>`));
    });

    it(`${name} --help: exit 0, the usage on stdout`, async () => {
      const { code, stdout, stderr } = await run([...prefix, '--help']);
      assert.equal(code, 0);
      assert.match(stdout, new RegExp(`^usage: ${name} <command>`));
      assert.equal(stderr, '');
    });
  }
});

const read = (file: string): string => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

/**
 * The configuration variables a piece of source reads (process.env.X, env['X'], envVar('X')):
 * ours (CA_A2A_*) and the stores' and AWS's, not the system's (USER for a default --by).
 */
function variablesRead(source: string): Set<string> {
  const names = [...source.matchAll(/\benv(?:\.|\[')([A-Z][A-Z0-9_]*)\b|\benvVar\('([A-Z][A-Z0-9_]*)'\)/g)].map((match) => (match[1] ?? match[2]) as string);
  return new Set(names.filter((name) => /^(CA_A2A_|AWS_)|^(REDIS|DATABASE)_URL$/.test(name)));
}

/** From `export [async] function NAME(` to the next top-level export: one function of a file. */
function commandSource(file: string, name: string): string {
  const source = read(file);
  const start = source.search(new RegExp(`export (async )?function ${name}\\(`));
  assert.notEqual(start, -1, `${name} in ${file}`);
  const end = source.indexOf('\nexport ', start + 1);
  return source.slice(start, end === -1 ? undefined : end);
}

// Each command's own sources; a command that opens the revocation stores also reads what
// storeOptionsFromEnv reads.
const COMMANDS: Record<string, () => string> = {
  up: () => read('proxy/up/cli.ts') + read('proxy/up/stack.ts'),
  sidecar: () => read('proxy/cli.ts'),
  'mcp-gateway': () => read('mcp/cli.ts'),
  agent: () => read('agents/cli.ts'),
  'admin-api': () => read('proxy/admin-api/cli.ts'),
  revoke: () => read('proxy/revoke/cli.ts'),
  issuer: () => commandSource('deploy/dev-issuer/cli.ts', 'issuerCommand'),
  token: () => commandSource('deploy/dev-issuer/cli.ts', 'tokenCommand'),
  call: () => read('proxy/client/cli.ts'),
};
const STORES = commandSource('proxy/stores/backends.ts', 'storeOptionsFromEnv') + commandSource('proxy/stores/backends.ts', 'defaultDataDir');

describe('--help names every environment variable the command reads', () => {
  for (const [command, source] of Object.entries(COMMANDS)) {
    it(`ca-a2a ${command} --help`, async () => {
      const text = source();
      const variables = variablesRead(text.includes('storeOptionsFromEnv(') ? text + STORES : text);
      assert.notEqual(variables.size, 0);
      const { code, stdout } = await run([command, '--help']);
      assert.equal(code, 0);
      const missing = [...variables].filter((name) => !new RegExp(`\\b${name}\\b`).test(stdout));
      assert.deepEqual(missing, [], `not in ca-a2a ${command} --help`);
    });
  }
});
