import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

// bench:ab runs in no other test: a before/after tool that stopped starting its sidecars would go
// unseen until the day it was needed.
describe('npm run bench:ab', () => {
  it('measures each checkout given, the second against the first, every request answered 2xx', async () => {
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', 'bench/ab.ts', root, root], {
      cwd: root,
      env: { ...process.env, BENCH_ROUNDS: '1', BENCH_DURATION: '1' },
    });
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 2, stdout);
    assert.match(lines[0] as string, /: \d+\.\d µs CPU per request, \d+ req\/s \(medians of 1 rounds\)$/);
    assert.match(lines[1] as string, /; CPU per request against .+, per round: median \d\.\d{3} \[\d\.\d{2}\]$/);
  });

  it('refuses to run without a checkout, with its usage', async () => {
    await assert.rejects(exec(process.execPath, ['--import', 'tsx', 'bench/ab.ts'], { cwd: root }), (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 2);
      assert.match(error.stderr, /^usage: npm run bench:ab -- DIR/);
      return true;
    });
  });
});
