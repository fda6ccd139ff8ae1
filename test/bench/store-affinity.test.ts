import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { moveToCore } from '../../bench/store-affinity.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const pidsNamed = async (name: string): Promise<string[]> => (await promisify(execFile)('pgrep', ['-x', name]).catch(() => ({ stdout: '' }))).stdout.split('\n');

/** The CPU list the kernel holds for a process (Cpus_allowed_list of /proc/PID/status). */
const allowed = (pid: number): string | undefined => /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];

describe('bench: moving the local stores off the proxy core', () => {
  it('moves every process of a name to the core, then gives each its former CPU list back', async () => {
    // A process with a name of its own, so that nothing else on the machine is touched.
    const name = `cab${process.pid}`.slice(0, 15);
    const binary = join(tempDirSync('affinity'), name);
    copyFileSync('/bin/sleep', binary);
    const children = [spawn(binary, ['30']), spawn(binary, ['30'])];
    try {
      const before = children.map((child) => allowed(child.pid as number));
      assert.ok(before.every((list) => list !== undefined && list !== '1'), `starts on every core: ${before.join(' ')}`);
      const moved = await moveToCore([name, 'no-such-process-x'], 1);
      assert.deepEqual(moved.names, [`${name} (2)`]);
      assert.deepEqual(children.map((child) => allowed(child.pid as number)), ['1', '1']);
      // One started during the run (a backend PostgreSQL forks) on core 1 goes back too.
      const later = spawn('taskset', ['-c', '1', binary, '30']);
      children.push(later);
      await new Promise((resolve) => later.once('spawn', resolve));
      for (let i = 0; i < 100 && !(await pidsNamed(name)).includes(String(later.pid)); i++) await new Promise((resolve) => setTimeout(resolve, 10));
      await moved.restore();
      assert.deepEqual(children.map((child) => allowed(child.pid as number)), [...before, before[0]]);
    } finally {
      for (const child of children) child.kill();
    }
  });
});
