import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { tempDirSync } from './temp-dir.js';

const root = new URL('../../', import.meta.url);
const run = promisify(execFile);

/** The `--import` options of package.json's test script: what every test file's process loads. */
function testScriptImports(): string[] {
  const { scripts } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: { test: string } };
  return [...scripts.test.matchAll(/--import[= ](\S+)/g)].map((match) => `--import=${match[1] as string}`);
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie answers signal 0 too, until init reaps it.
  return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

describe('a test file the runner cancels at its timeout', () => {
  let childPid = 0;
  after(() => {
    if (childPid > 0 && running(childPid)) process.kill(childPid, 'SIGKILL');
  });

  it('takes the processes it started down with it, under the npm test script\'s options', async () => {
    const dir = tempDirSync('reap');
    const pidFile = join(dir, 'child.pid');
    const fixture = new URL('fixtures/hangs-with-child.ts', import.meta.url).pathname;
    const { stdout } = await run(process.execPath, [...testScriptImports(), '--test', '--test-timeout=1500', fixture], {
      cwd: root.pathname,
      // Without NODE_TEST_CONTEXT: the inner runner would report to this one instead of to stdout.
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, CHILD_PID_FILE: pidFile },
    }).catch((error: { stdout: string }) => error);
    assert.match(stdout, /# cancelled 1/, 'the runner cancelled the file');
    childPid = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(childPid > 0);
    // SIGTERM is delivered by then; the child may still be on its way out.
    for (let i = 0; i < 100 && running(childPid); i++) await sleep(50);
    assert.equal(running(childPid), false, `the file's child ${childPid} outlived it`);
  });
});
