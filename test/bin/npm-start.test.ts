import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const ROOT = new URL('../../', import.meta.url).pathname;

/** Whether any process of the group still runs. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm start', () => {
  it('stops the whole system when npm itself gets SIGTERM: the stack shuts down, nothing is left running', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-npm-start-'));
    // A process group of its own, as a terminal or a supervisor gives it: what is left of it can be found.
    const npm = spawn('npm', ['start', '--', '--ephemeral-ports', '--no-samples', '--data-dir', dataDir], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const pgid = npm.pid as number;
    let output = '';
    const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        npm.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('Ctrl-C stops everything.')) resolve();
        });
        npm.on('exit', () => reject(new Error(`npm start ended before serving:\n${output}`)));
      });
      npm.kill('SIGTERM');
      assert.equal(await exited, 0, output);
      // npm has exited, after its script: the stack it ran must not have been left behind, orphaned and serving.
      assert.equal(groupAlive(pgid), false, 'a process of npm start outlived it');
      assert.match(output, /• SIGTERM: stopping\n• stopped\n/);
    } finally {
      if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
