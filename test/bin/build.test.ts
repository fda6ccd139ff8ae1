import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildIsCurrent } from '../../bin/build-state.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OUT = `build-test-${process.pid}`;

function node(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('the build (bin/build.js, run by npm ci as "prepare")', () => {
  after(() => rm(`${ROOT}${OUT}`, { recursive: true, force: true }));

  it('bundles every command into one folder under the root, lists its sources, and the bundle finds policies and schemas', async () => {
    const built = await node(['bin/build.js', OUT]);
    assert.equal(built.code, 0, built.stderr);
    const inputs = JSON.parse(await readFile(`${ROOT}${OUT}/inputs.json`, 'utf8')) as string[];
    for (const source of ['bin/main.ts', 'proxy/sidecar.ts', 'proxy/layers/authn.ts', 'mcp/gateway.ts', 'agents/cli.ts', 'deploy/dev-issuer/cli.ts']) {
      assert.ok(inputs.includes(source), `${source} is in the build`);
    }
    assert.ok(!inputs.some((file) => file.startsWith('node_modules/')), 'dependencies are not listed as sources');
    // policy check reads the shipped policies and the JSON Schemas through projectPath().
    const check = await node([`${OUT}/main.js`, 'policy', 'check']);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /^ok: \d+ files checked \(policies\), 0 errors/);
  });

  it('is current only while it exists and no source it lists is newer', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ca-a2a-build-state-'));
    const url = pathToFileURL(`${root}/`);
    try {
      assert.equal(buildIsCurrent(url), false, 'no build');
      await mkdir(join(root, 'dist'));
      await mkdir(join(root, 'proxy'));
      await writeFile(join(root, 'proxy/a.ts'), '');
      await writeFile(join(root, 'dist/inputs.json'), '["proxy/a.ts"]');
      await writeFile(join(root, 'dist/main.js'), '');
      const t = Date.now() / 1000;
      await utimes(join(root, 'proxy/a.ts'), t - 10, t - 10);
      await utimes(join(root, 'dist/main.js'), t, t);
      assert.equal(buildIsCurrent(url), true);
      await utimes(join(root, 'proxy/a.ts'), t + 10, t + 10);
      assert.equal(buildIsCurrent(url), false, 'a source edited after the build');
      await utimes(join(root, 'proxy/a.ts'), t - 10, t - 10);
      await writeFile(join(root, 'dist/inputs.json'), '["proxy/gone.ts"]');
      assert.equal(buildIsCurrent(url), false, 'a listed source is missing');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('bin/ca-a2a.js answers the same from the build and from the sources', async () => {
    assert.equal(buildIsCurrent(pathToFileURL(ROOT)), true, 'npm ci built dist/ (the "prepare" script) and no source changed since');
    const viaBin = await node(['bin/ca-a2a.js', '--help']);
    const fromSource = await node(['bin/ca-a2a.js', '--help'], { CA_A2A_FROM_SOURCE: '1' });
    assert.equal(viaBin.code, 0, viaBin.stderr);
    assert.equal(viaBin.stdout, fromSource.stdout);
    assert.match(viaBin.stdout, /^usage: ca-a2a <command>/);
  });
});
