import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

/** Runs `ca-a2a ...args` with a stdout nobody reads (`| head` once head has its lines). */
function runWithClosedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Closed before the command has started: every write it makes fails with EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('a command whose reader stops early', () => {
  it('ends with its own exit code and no stack trace when stdout is closed (ca-a2a policy test --verbose | head)', async () => {
    const { code, stderr } = await runWithClosedStdout(['policy', 'test', '--verbose']);
    assert.equal(stderr, '');
    assert.equal(code, 0);
  });
});
