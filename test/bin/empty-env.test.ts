import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { shippedPolicyFile } from '../../proxy/services.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

/**
 * Runs `ca-a2a ...args` in `cwd` until it logs `started` (then stops it with SIGTERM) or exits;
 * resolves what it wrote and how it ended.
 */
function runUntil(args: string[], cwd: string, env: NodeJS.ProcessEnv, started: string): Promise<{ started: boolean; code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let seen = false;
    const read = (chunk: Buffer): void => {
      out += chunk.toString();
      if (!seen && out.includes(started)) {
        seen = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => resolve({ started: seen, code, out }));
  });
}

function run(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

// A compose file or a task definition often passes a variable through as `X: ${X:-}`: set, empty.
describe('an exported-but-empty variable means unset, as if not exported at all', () => {
  it('ca-a2a sidecar starts on the defaults, its revocation journal in ./.ca-a2a, where ca-a2a revoke writes', async () => {
    const cwd = tempDirSync('empty-env');
    const empty = {
      CA_A2A_UPSTREAM: '', CA_A2A_ISSUER: '', CA_A2A_ADMIN_LISTEN: '', CA_A2A_EGRESS_LISTEN: '', CA_A2A_PUBLIC_URL: '',
      CA_A2A_DATA_DIR: '', REDIS_URL: '', DATABASE_URL: '', CA_A2A_LOG_LEVEL: '',
    };
    const sidecar = await runUntil(['sidecar', '--policy', shippedPolicyFile('archivist'), '--listen', '127.0.0.1:0', '--no-watch'], cwd, empty, '"sidecar_started"');
    assert.equal(sidecar.started, true, sidecar.out);
    assert.equal(sidecar.code, 0, sidecar.out);
    assert.match(sidecar.out, /"event_type":"revocations_loaded".*"durable":"journal"/, 'the journal of ./.ca-a2a, not revocations kept in memory only');
    assert.match(sidecar.out, /"upstream":"http:\/\/127\.0\.0\.1:9004"/, 'the policy\'s upstream');

    const revoke = await run(['revoke', 'jti', 'a-jti', '--reason', 'test'], cwd, empty);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(readFileSync(join(cwd, '.ca-a2a', 'revocations.jsonl'), 'utf8'), /"jti":"a-jti"/);
  });

  it('ca-a2a mcp-gateway keeps its database and bucket in ./.ca-a2a', async () => {
    const cwd = tempDirSync('empty-env');
    const gateway = await runUntil(['mcp-gateway', '--listen', '127.0.0.1:0'], cwd, { CA_A2A_DATA_DIR: '', DATABASE_URL: '', CA_A2A_S3_BUCKET: '' }, '"mcp_gateway_started"');
    assert.equal(gateway.started, true, gateway.out);
    assert.equal(gateway.code, 0, gateway.out);
    assert.equal(existsSync(join(cwd, '.ca-a2a', 'pglite')), true, 'the database in ./.ca-a2a');
    assert.equal(existsSync(join(cwd, 'pglite')), false, 'not in the working directory itself');
  });
});
