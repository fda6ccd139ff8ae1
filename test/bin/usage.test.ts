import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
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
