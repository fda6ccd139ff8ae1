import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { clientSecretsPath, loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { startIssuer } from '../../deploy/dev-issuer/issuer.js';
import { tempDir } from './helpers.js';

const BIN = fileURLToPath(new URL('../../bin/ca-a2a.js', import.meta.url));
const ROOT = path.dirname(path.dirname(BIN));

function spawnCli(args: string[], env: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
}

async function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

describe('ca-a2a issuer and ca-a2a token', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let issuerProcess: ChildProcessWithoutNullStreams;
  let banner: string;
  let issuerUrl: string;
  const env = (): NodeJS.ProcessEnv => ({ CA_A2A_DATA_DIR: dir.path, CA_A2A_ISSUER: '' });

  before(async () => {
    dir = await tempDir('cli');
    issuerProcess = spawnCli(['issuer', '--listen', '127.0.0.1:0'], env());
    const [line] = (await once(createInterface({ input: issuerProcess.stdout }), 'line')) as [string];
    banner = line;
    const match = /(http:\/\/127\.0\.0\.1:\d+\/realms\/ca-a2a)/.exec(banner);
    assert.ok(match?.[1] !== undefined, `unexpected banner: ${banner}`);
    issuerUrl = match[1];
  });
  after(async () => {
    if (issuerProcess.exitCode === null) {
      issuerProcess.kill('SIGTERM');
      await once(issuerProcess, 'exit');
    }
    await dir.remove();
  });

  it('issuer prints one line naming its URL (real port) and the secrets file, never a secret', async () => {
    assert.ok(!issuerUrl.endsWith(':0/realms/ca-a2a'));
    assert.ok(banner.includes(clientSecretsPath(dir.path)));
    for (const secret of Object.values(await loadClientSecrets(dir.path))) assert.ok(!banner.includes(secret));
  });

  it('token prints exactly one JWT line on stdout and nothing else', async () => {
    const { code, stdout, stderr } = await runCli(['token', '--client', 'viewer', '--issuer', issuerUrl], env());
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    assert.equal(stderr, '');
    const claims = decodeJwt(stdout.trim());
    assert.equal(claims.azp, 'viewer');
    assert.equal(claims.iss, issuerUrl);
  });

  it('token takes the issuer from CA_A2A_ISSUER and --decode prints the claims as JSON', async () => {
    const { code, stdout, stderr } = await runCli(['token', '--client', 'admin', '--decode'], { ...env(), CA_A2A_ISSUER: issuerUrl });
    assert.equal(code, 0, stderr);
    const decoded = JSON.parse(stdout) as { header: { alg: string }; payload: { realm_access: { roles: string[] } } };
    assert.equal(decoded.header.alg, 'RS256');
    assert.deepEqual(decoded.payload.realm_access.roles, ['admin']);
  });

  it('token exits 1 with a clear message for an unknown client, without printing a secret', async () => {
    // Names an object has by inheritance are no clients either.
    for (const name of ['nobody', 'toString', 'constructor']) {
      const { code, stdout, stderr } = await runCli(['token', '--client', name, '--issuer', issuerUrl], env());
      assert.equal(code, 1);
      assert.equal(stdout, '');
      assert.match(stderr, new RegExp(`unknown client '${name}'`));
      for (const secret of Object.values(await loadClientSecrets(dir.path))) assert.ok(!stderr.includes(secret));
    }
  });

  it('token exits 1 when the issuer is unreachable and 2 on a usage error', async () => {
    const [unreachable, usage] = await Promise.all([
      runCli(['token', '--client', 'viewer', '--issuer', 'http://127.0.0.1:1/realms/ca-a2a'], env()),
      runCli(['token', '--bogus'], env()),
    ]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /is the issuer running/);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: ca-a2a token/);
  });

  it('token gets a token from a plain-http issuer off this host only with --allow-http-issuer or CA_A2A_ALLOW_HTTP_ISSUER=1', async () => {
    // Bound to 0.0.0.0, the issuer names itself http://0.0.0.0:PORT: reachable here, yet no loopback name.
    const offHost = await startIssuer({ host: '0.0.0.0', port: 0, dataDir: dir.path });
    try {
      const token = (...flags: string[]) => (extra: NodeJS.ProcessEnv) => runCli(['token', '--client', 'viewer', '--issuer', offHost.issuer, ...flags], { ...env(), CA_A2A_ALLOW_HTTP_ISSUER: '', ...extra });
      const [refused, misspelt, flagged, variable] = await Promise.all([token()({}), token()({ CA_A2A_ALLOW_HTTP_ISSUER: 'ture' }), token('--allow-http-issuer')({}), token()({ CA_A2A_ALLOW_HTTP_ISSUER: '1' })]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /must use https \(plain http is allowed on loopback only, or with --allow-http-issuer\)/);
      assert.equal(misspelt.code, 2);
      for (const allowed of [flagged, variable]) {
        assert.equal(allowed.code, 0, allowed.stderr);
        assert.equal(decodeJwt(allowed.stdout.trim()).iss, offHost.issuer);
      }
    } finally {
      await offHost.close();
    }
  });

  it('issuer stops on SIGTERM with exit code 0', async () => {
    issuerProcess.kill('SIGTERM');
    const [code] = (await once(issuerProcess, 'exit')) as [number | null];
    assert.equal(code, 0);
  });
});
