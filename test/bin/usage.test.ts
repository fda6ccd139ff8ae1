import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
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
      assert.equal(code, 2, `exit ${code}; stderr: ${stderr}`);
      assert.equal(stdout, '');
      assert.match(stderr, new RegExp(`usage: ${name} <command>`));
    });

    // Names an object has without defining them: looked up as commands, they crashed with a TypeError.
    for (const unknown of ['toString', 'constructor', '__proto__']) {
      it(`${name} ${unknown}: exit 2, an unknown command, no stack trace`, async () => {
        const { code, stdout, stderr } = await run([...prefix, unknown]);
        assert.equal(code, 2, `exit ${code}; stderr: ${stderr}`);
        assert.equal(stdout, '');
        assert.match(stderr, new RegExp(`^${name}: unknown command '${unknown}'`));
      });
    }

    it(`${name} --help: exit 0, the usage on stdout`, async () => {
      const { code, stdout, stderr } = await run([...prefix, '--help']);
      assert.equal(code, 0, `exit ${code}; stderr: ${stderr}`);
      assert.match(stdout, new RegExp(`^usage: ${name} <command>`));
      assert.equal(stderr, '');
    });
  }
});

const read = (file: string): string => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

/**
 * The configuration variables a piece of source reads (process.env.X, env['X'],
 * flagOrEnv('--flag', value, 'X')): ours (CA_A2A_*) and the stores' and AWS's, not the system's
 * (USER for a default --by).
 */
function variablesRead(source: string): Set<string> {
  const names = [...source.matchAll(/\benv(?:\.|\[')([A-Z][A-Z0-9_]*)\b|\bflagsOrEnv(?:List)?\('[^']*', [^;]*?'([A-Z][A-Z0-9_]*)'\)|\bflagOrEnv\('[^']*', [^;]*?'([A-Z][A-Z0-9_]*)'\)/g)].map((match) => (match[1] ?? match[2] ?? match[3]) as string);
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

// Each flag also reads an environment variable (interface.md): a bad value names where it is, the
// variable when it came from there, so an operator does not look for a --listen nobody passed.
describe('a bad value is reported under the name it came from: the variable, or the flag when given', () => {
  const cases: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
    ['sidecar', ['sidecar', '--service', 'archivist'], { CA_A2A_LISTEN: 'nonsense' }, /^ca-a2a sidecar: CA_A2A_LISTEN 'nonsense' is not HOST:PORT/],
    ['sidecar', ['sidecar', '--service', 'archivist'], { CA_A2A_ADMIN_LISTEN: '127.0.0.1:99999' }, /^ca-a2a sidecar: CA_A2A_ADMIN_LISTEN '127\.0\.0\.1:99999' is not HOST:PORT/],
    ['sidecar', ['sidecar', '--service', 'archivist'], { CA_A2A_UPSTREAM: 'ftp://x' }, /^ca-a2a sidecar: CA_A2A_UPSTREAM must be an http\(s\) URL, got 'ftp:\/\/x'$/],
    ['sidecar', ['sidecar', '--service', 'archivist'], { CA_A2A_PUBLIC_URL: 'https://a.example.com,b.example.com' }, /^ca-a2a sidecar: CA_A2A_PUBLIC_URL must be an http\(s\) URL, got 'b\.example\.com'$/],
    ['sidecar', ['sidecar', '--service', 'archivist'], { CA_A2A_SERVICE_URLS: 'mcp' }, /^ca-a2a sidecar: CA_A2A_SERVICE_URLS expects NAME=URL, got 'mcp'$/],
    ['sidecar', ['sidecar', '--service', 'archivist'], { CA_A2A_TRUSTED_PROXIES: '10.0.0.0/33' }, /^ca-a2a sidecar: CA_A2A_TRUSTED_PROXIES must be an IP address or CIDR, got '10\.0\.0\.0\/33'$/],
    ['sidecar', ['sidecar', '--service', 'archivist', '--listen', 'flagged'], { CA_A2A_LISTEN: 'nonsense' }, /^ca-a2a sidecar: --listen 'flagged' is not HOST:PORT/],
    ['sidecar', ['sidecar', '--service', 'archivist'], { CA_A2A_NO_WATCH: 'ture' }, /^ca-a2a sidecar: CA_A2A_NO_WATCH must be 1, true, yes or on \(or 0, false, no, off\), got 'ture'$/],
    ['sidecar', ['sidecar', '--service', 'archivist'], { CA_A2A_ALLOW_HTTP_ISSUER: 'maybe' }, /^ca-a2a sidecar: CA_A2A_ALLOW_HTTP_ISSUER must be 1, true, yes or on \(or 0, false, no, off\), got 'maybe'$/],
    ['issuer', ['issuer'], { CA_A2A_ISSUER_LISTEN: 'nonsense' }, /^ca-a2a issuer: CA_A2A_ISSUER_LISTEN 'nonsense' is not HOST:PORT/],
    ['issuer', ['issuer', '--listen', 'flagged'], { CA_A2A_ISSUER_LISTEN: 'nonsense' }, /^ca-a2a issuer: --listen 'flagged' is not HOST:PORT/],
    ['token', ['token', '--client', 'viewer'], { CA_A2A_ISSUER: 'nonsense' }, /^ca-a2a token: CA_A2A_ISSUER must be an http\(s\) URL, got 'nonsense'$/],
    ['mcp-gateway', ['mcp-gateway'], { CA_A2A_LISTEN: 'nonsense' }, /^ca-a2a mcp-gateway: CA_A2A_LISTEN 'nonsense' is not HOST:PORT/],
    ['agent', ['agent', 'extractor', '--egress', 'http://127.0.0.1:1'], { CA_A2A_LISTEN: 'nonsense' }, /^ca-a2a agent: CA_A2A_LISTEN 'nonsense' is not HOST:PORT/],
    ['agent', ['agent', 'extractor'], { CA_A2A_EGRESS_URL: 'http//127.0.0.1:15001' }, /^ca-a2a agent: CA_A2A_EGRESS_URL must be an http\(s\) URL, got 'http\/\/127\.0\.0\.1:15001'$/],
    ['agent', ['agent', 'extractor', '--egress', 'http://127.0.0.1:15001/?x=1'], { CA_A2A_EGRESS_URL: 'http://127.0.0.1:15001' }, /^ca-a2a agent: --egress is an origin with an optional path, without a query, fragment or user, got 'http:\/\/127\.0\.0\.1:15001\/\?x=1'$/],
    ['agent', ['agent', 'extractor', '--egress', 'http://127.0.0.1:15001'], { CA_A2A_PUBLIC_URL: 'https://svc:s3cret@extractor.example.com/message' }, /^ca-a2a agent: CA_A2A_PUBLIC_URL is an origin with an optional path, without a query, fragment or user, got 'https:\/\/\*\*\*@extractor\.example\.com\/message'$/],
    ['agent', ['agent', 'extractor', '--egress', 'http://127.0.0.1:15001', '--issuer', 'keycloak:8080/realms/ca-a2a'], {}, /^ca-a2a agent: --issuer must be an http\(s\) URL, got 'keycloak:8080\/realms\/ca-a2a'$/],
    ['agent', ['agent', 'extractor', '--egress', 'http://127.0.0.1:15001'], { CA_A2A_ISSUER: 'https://kc.example.com/realms/ca-a2a#x' }, /^ca-a2a agent: CA_A2A_ISSUER is an origin with an optional path, without a query, fragment or user, got 'https:\/\/kc\.example\.com\/realms\/ca-a2a#x'$/],
    ['admin-api', ['admin-api'], { CA_A2A_LISTEN: 'nonsense' }, /^ca-a2a admin-api: CA_A2A_LISTEN 'nonsense' is not HOST:PORT/],
    ['admin-api', ['admin-api'], { CA_A2A_LISTEN: '0.0.0.0:0' }, /^ca-a2a admin-api: CA_A2A_LISTEN must be a loopback address, not '0\.0\.0\.0:0'/],
  ];
  for (const [command, args, env, message] of cases) {
    it(`ca-a2a ${args.join(' ')} with ${Object.entries(env).map(([name, value]) => `${name}=${value}`).join(' ')}: exit 2, ${message.source.includes('--') ? 'the flag' : 'the variable'} named`, async () => {
      // Empty stores: nothing would be opened anyway, as the value is refused first.
      const { code, stdout, stderr } = await run(args, { REDIS_URL: '', DATABASE_URL: '', CA_A2A_DATA_DIR: '/nonexistent/ca-a2a-usage', ...env });
      assert.equal(code, 2, `${command}: ${stderr}`);
      assert.equal(stdout, '');
      assert.match(stderr.split('\n')[0] ?? '', message);
    });
  }
});
