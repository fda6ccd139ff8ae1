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

/**
 * Starts `command args… --ephemeral-ports --no-samples --data-dir TMP` from the project root in a
 * process group of its own (as a terminal or a supervisor runs it), waits until the stack serves,
 * sends SIGTERM to the launcher (npm, npx) only, and reports what happened once every process
 * holding its stdout has ended (false if that did not happen within a minute: something outlived it).
 */
async function sigtermLauncher(command: string, args: string[]): Promise<{ ended: boolean; output: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-launcher-'));
  const launcher = spawn(command, [...args, '--ephemeral-ports', '--no-samples', '--data-dir', dataDir], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  const pgid = launcher.pid as number;
  let output = '';
  const exited = new Promise<void>((resolve) => launcher.on('exit', () => resolve()));
  const allEnded = new Promise<boolean>((resolve) => launcher.stdout.on('close', () => resolve(true)));
  try {
    await new Promise<void>((resolve, reject) => {
      launcher.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ctrl-C stops everything.')) resolve();
      });
      launcher.on('exit', () => reject(new Error(`${command} ended before serving:\n${output}`)));
    });
    launcher.kill('SIGTERM');
    await exited;
    const ended = await Promise.race([allEnded, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 60_000).unref())]);
    return { ended, output };
  } finally {
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
}

describe('npm start and npx ca-a2a up stop the whole system on SIGTERM to npm', () => {
  it('npm start: the stack stops and leaves nothing running', async () => {
    // npm's exit code is not asserted: npm passes the signal on to the script, but now and then
    // ends at once on it (killed, no code), before the stack has stopped.
    const { ended, output } = await sigtermLauncher('npm', ['start', '--']);
    assert.ok(ended, `the stack outlived npm:\n${output}`);
    assert.match(output, /• SIGTERM: stopping\n• stopped\n/);
  });

  it('ca-a2a up: a SIGTERM while it starts is answered at once: the components finish starting, no sample is sent, the stack stops, nothing left running', async () => {
    // npm, a supervisor or a test sends SIGTERM as soon as it reads a line; the listener used to be
    // added only after "Ctrl-C stops everything.", and a signal just before it killed the process
    // with every component still holding its files (and, under npm start, orphaned).
    const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-launcher-'));
    const child = spawn(process.execPath, ['bin/ca-a2a.js', 'up', '--ephemeral-ports', '--data-dir', dataDir], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    try {
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = new Promise<[number | null, string | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal])));
      await new Promise<void>((resolve) => child.stdout.once('data', (chunk: Buffer) => resolve(void (output += chunk.toString()))));
      assert.match(output, /^• starting ca-a2a/);
      child.kill('SIGTERM');
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      assert.deepEqual(await exited, [0, null], output);
      assert.match(output, /^• starting ca-a2a[^\n]*\n• SIGTERM: stopping once the components have started\n/);
      assert.match(output, /• admin api [^\n]*\n• stopped\n$/, 'every component started, then the stack stopped');
      assert.doesNotMatch(output, /samples|uploaded|Ctrl-C stops everything/, 'no sample sent, no summary');
      assert.equal(groupAlive(child.pid as number), false, 'no component outlived the command');
    } finally {
      if (groupAlive(child.pid as number)) process.kill(-(child.pid as number), 'SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('npx ca-a2a up: the stack stops too, though npm runs it through a shell that does not pass the signal on', async () => {
    const { ended, output } = await sigtermLauncher('npx', ['ca-a2a', 'up']);
    assert.ok(ended, `the stack outlived npx:\n${output}`);
    assert.match(output, /• SIGTERM: stopping\n• stopped\n/);
  });
});
